// The SQL editor of the brickyard console: CodeMirror 6 with SQL highlighting and AI-function completions.
import { EditorView, basicSetup } from "codemirror";
import { sql, StandardSQL } from "@codemirror/lang-sql";
import { snippetCompletion } from "@codemirror/autocomplete";

export function mountSQLEditor(textarea, hints, tables) {
  const aiCompletions = Object.entries(hints).map(([name, snippet]) =>
    snippetCompletion(snippet.replace(/(\w+)(?=[,)])/g, (m) => "${" + m + "}"), { label: name, type: "function", detail: "AI function" })
  );
  const language = sql({ dialect: StandardSQL, schema: tables, upperCaseKeywords: true });
  const aiSource = StandardSQL.language.data.of({
    autocomplete: (context) => {
      const word = context.matchBefore(/\w*/);
      if (!word || (word.from === word.to && !context.explicit)) return null;
      return { from: word.from, options: aiCompletions, validFor: /^\w*$/ };
    },
  });
  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      language,
      aiSource,
      EditorView.lineWrapping,
      EditorView.cspNonce.of(document.querySelector('meta[name="csp-nonce"]')?.content || ""),
      EditorView.contentAttributes.of({ "aria-label": "SQL editor" }),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) textarea.value = update.state.doc.toString();
      }),
    ],
  });
  textarea.hidden = true;
  textarea.after(view.dom);
  return view;
}
