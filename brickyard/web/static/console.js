// The console's few behaviours: charts from JSON embedded in the page, and AI-function hints in the editor.
// No inline scripts (the Content-Security-Policy forbids them); htmx does the rest.
"use strict";

const COLORS = ["#1f5fbf", "#d9730d", "#1b7a3a", "#b3261e", "#6941c6", "#0e7490", "#a16207", "#be185d", "#6b7280"];

function readJSON(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

function usageCharts() {
  const data = readJSON("usage-data");
  if (!data || typeof Chart === "undefined") return;
  const make = (id, field, type) => {
    const canvas = document.getElementById(id);
    if (!canvas) return;
    new Chart(canvas, {
      type: type,
      data: {
        labels: data.labels,
        datasets: data.series.map((s, i) => ({
          label: s.name, data: s[field], backgroundColor: COLORS[i % COLORS.length],
          borderColor: COLORS[i % COLORS.length], fill: false, tension: 0.2,
        })),
      },
      options: { animation: false, responsive: true, scales: { x: { stacked: type === "bar" }, y: { stacked: type === "bar", beginAtZero: true } } },
    });
  };
  make("spend-chart", "usd", "bar");
  make("calls-chart", "calls", "line");
}

function paretoChart() {
  const data = readJSON("pareto-data");
  const canvas = document.getElementById("pareto-chart");
  if (!data || !canvas || typeof Chart === "undefined") return;
  const color = (p) => (p.chosen ? "#b3261e" : p.front ? "#1f5fbf" : "#6b7280");
  const datasets = data.points.map((p) => ({
    label: p.id, type: "line", data: [{ x: p.x, y: p.low }, { x: p.x, y: p.high }],
    borderColor: color(p), pointRadius: 0, showLine: true, borderWidth: 1,
  }));
  datasets.push({
    label: "candidates", type: "scatter", data: data.points.map((p) => ({ x: p.x, y: p.y, id: p.id })),
    pointBackgroundColor: data.points.map(color), pointRadius: 5,
  });
  datasets.push({
    label: "Pareto front", type: "line", data: data.front, borderDash: [6, 4], borderColor: "#1f5fbf", pointRadius: 0, fill: false,
  });
  new Chart(canvas, {
    data: { datasets: datasets },
    options: {
      animation: false,
      scales: { x: { type: "linear", title: { display: true, text: data.x_label } }, y: { title: { display: true, text: data.metric } } },
      plugins: {
        legend: { labels: { filter: (item) => item.text === "Pareto front" || item.text === "candidates" } },
        tooltip: { callbacks: { label: (ctx) => (ctx.raw && ctx.raw.id ? ctx.raw.id + ": " : ctx.dataset.label + ": ") + ctx.parsed.y.toFixed(3) + " at " + ctx.parsed.x.toPrecision(3) } },
      },
    },
  });
}

function hints() {
  const editor = document.getElementById("sql");
  if (!editor) return;
  const schema = readJSON("sql-schema") || { hints: {}, tables: {} };
  // CodeMirror (vendored bundle) when it loaded; the plain textarea otherwise
  const view = typeof BrickyardEditor !== "undefined" ? BrickyardEditor.mountSQLEditor(editor, schema.hints, schema.tables) : null;
  document.querySelectorAll("button.hint").forEach((button) => {
    button.addEventListener("click", () => {
      const snippet = button.dataset.snippet;
      if (view) {
        const range = view.state.selection.main;
        view.dispatch({ changes: { from: range.from, to: range.to, insert: snippet }, selection: { anchor: range.from + snippet.length } });
        view.focus();
        return;
      }
      const start = editor.selectionStart, end = editor.selectionEnd;
      editor.value = editor.value.slice(0, start) + snippet + editor.value.slice(end);
      editor.focus();
      editor.selectionStart = editor.selectionEnd = start + snippet.length;
    });
  });
}

document.addEventListener("DOMContentLoaded", () => { usageCharts(); paretoChart(); hints(); });

// The playground: one streamed request per chosen endpoint, read as server-sent events from a POST.
function playground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const results = document.getElementById("p-results");
  const save = document.getElementById("p-save");
  const expected = document.getElementById("p-expected");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = Array.from(document.querySelectorAll("select.p-endpoint")).map((s) => s.value).filter((v) => v);
    results.replaceChildren();
    save.hidden = true;
    const outputs = {};
    await Promise.all(chosen.map((endpoint) => streamOne(endpoint, form, token, results, outputs)));
    document.getElementById("p-save-user").value = form.elements.user.value;
    document.getElementById("p-save-system").value = form.elements.system.value;
    document.getElementById("p-save-outputs").value = JSON.stringify(outputs);
    expected.replaceChildren(new Option("none (unlabelled)", ""), ...Object.keys(outputs).map((e) => new Option(e, e)));
    save.hidden = Object.keys(outputs).length === 0;
  });
}

async function streamOne(endpoint, form, token, results, outputs) {
  const column = document.createElement("article");
  const title = document.createElement("h2");
  const text = document.createElement("pre");
  const figures = document.createElement("p");
  title.textContent = endpoint;
  figures.className = "figures note";
  figures.textContent = "waiting…";
  column.append(title, text, figures);
  column.dataset.endpoint = endpoint;
  results.append(column);
  const body = new URLSearchParams(new FormData(form));
  body.set("endpoint", endpoint);
  const started = performance.now();
  const response = await fetch("/playground/stream", { method: "POST", body: body, headers: { "X-CSRF-Token": token } });
  if (!response.ok) {
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const alert = page.querySelector('[role="alert"]');
    figures.textContent = "error: " + (alert ? alert.textContent : response.status);
    column.classList.add("fail");
    return;
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = JSON.parse(buffer.slice(0, cut).replace(/^data: /, ""));
      buffer = buffer.slice(cut + 2);
      if (event.delta !== undefined) {
        text.textContent += event.delta;
        if (figures.textContent === "waiting…") figures.textContent = "first piece after " + ((performance.now() - started) / 1000).toFixed(2) + " s";
      } else if (event.error) {
        figures.textContent = "error: " + event.error;
        column.classList.add("fail");
      } else if (event.done) {
        figures.textContent = event.latency_s.toFixed(2) + " s · " + event.input_tokens + " in / " + event.output_tokens +
          " out tokens · $" + (event.cost_usd || 0).toFixed(6) + " · served by " + event.served_by;
        outputs[endpoint] = { text: text.textContent, latency_s: event.latency_s, input_tokens: event.input_tokens,
          output_tokens: event.output_tokens, cost_usd: event.cost_usd };
      }
    }
  }
}

document.addEventListener("DOMContentLoaded", playground);
