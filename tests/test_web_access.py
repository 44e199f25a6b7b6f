"""The console's access rules without a browser: sign-in, sessions, CSRF and Origin checks, scopes per page."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from web_seed import Seeded, seed

from brickyard.config import Window
from brickyard.evals._types import Case
from brickyard.evals.judge_agreement import calibration_cases
from brickyard.server.app import create_app
from brickyard.web.sessions import COOKIE, Sessions
from brickyard.web.store import ConsoleStore
from brickyard.web.usage import _burn

ORIGIN = "http://127.0.0.1"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return seed(tmp_path_factory.mktemp("web"))


@pytest.fixture(scope="module")
def app(seeded: Seeded) -> Iterator[FastAPI]:
    yield create_app(seeded.workspace)


def client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=ORIGIN, follow_redirects=False)


def sign_in(app: FastAPI, key: str) -> tuple[TestClient, str]:
    """A client signed in with `key`, and its session's CSRF token."""
    c = client(app)
    response = c.post("/login", data={"key": key, "next": "/usage"}, headers={"Origin": ORIGIN})
    assert response.status_code == 303, response.text
    page = c.get("/usage")
    assert page.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token
    return c, token[1]


def test_a_key_becomes_an_opaque_http_only_strict_cookie(app: FastAPI, seeded: Seeded) -> None:
    c = client(app)
    response = c.post("/login", data={"key": seeded.admin}, headers={"Origin": ORIGIN})
    assert response.status_code == 303 and response.headers["location"] == "/usage"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(COOKIE + "=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert seeded.admin not in cookie and seeded.admin[4:20] not in session_id
    page = c.get("/usage")
    assert page.status_code == 200 and seeded.admin not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("key", ["", "bky-wrong", "x" * 5000, "<script>alert(1)</script>"])
def test_a_bad_key_signs_nobody_in_and_is_not_echoed(app: FastAPI, key: str) -> None:
    c = client(app)
    response = c.post("/login", data={"key": key}, headers={"Origin": ORIGIN})
    assert response.status_code == 401 and "set-cookie" not in response.headers
    assert "Not signed in" in response.text
    if key:
        assert key not in response.text
    assert c.get("/usage").status_code == 303


def test_every_page_sends_a_stranger_to_sign_in(app: FastAPI, seeded: Seeded) -> None:
    stranger = client(app)
    stranger.cookies.set(COOKIE, "forged-session-id")
    for path in ("/usage", "/keys", "/sql", "/evals", f"/evals/{seeded.run_id}", "/usage/payloads?q=a"):
        response = stranger.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
    htmx = stranger.get("/usage/payloads?q=a", headers={"HX-Request": "true"})
    assert htmx.headers["hx-redirect"].startswith("/login")
    assert stranger.post("/keys", data={"name": "x", "scopes": "*"}).status_code == 303


def test_sign_in_never_redirects_off_the_server(app: FastAPI, seeded: Seeded) -> None:
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:alert(1)"):
        response = client(app).post("/login", data={"key": seeded.admin, "next": target}, headers={"Origin": ORIGIN})
        assert response.headers["location"] == "/usage", target


def test_forged_posts_are_refused_and_change_nothing(app: FastAPI, seeded: Seeded) -> None:
    c, token = sign_in(app, seeded.admin)
    attempts = [
        ({}, {"name": "forged-1", "scopes": "*"}),  # no token at all
        ({}, {"name": "forged-2", "scopes": "*", "csrf": token + "x"}),  # a wrong token
        ({"Origin": "https://evil.example"}, {"name": "forged-3", "scopes": "*", "csrf": token}),  # foreign Origin
        ({"Sec-Fetch-Site": "cross-site"}, {"name": "forged-4", "scopes": "*", "csrf": token}),
        ({"X-CSRF-Token": "nope"}, {"name": "forged-5", "scopes": "*"}),
    ]
    for headers, form in attempts:
        response = c.post("/keys", data=form, headers=headers)
        assert response.status_code == 403, (headers, form)
        assert seeded.workspace.keys.get(str(form["name"])) is None
    other, _ = sign_in(app, seeded.team_a)  # another session's token does not work here either
    assert other.post("/sql/jobs", data={"sql": "SELECT 1", "csrf": token}).status_code == 403
    # a foreign page cannot sign the browser in either (login CSRF)
    assert (
        client(app).post("/login", data={"key": seeded.admin}, headers={"Origin": "https://evil.example"}).status_code
        == 403
    )
    done = c.post("/keys", data={"name": "made-here", "scopes": "det", "csrf": token}, headers={"Origin": ORIGIN})
    assert done.status_code == 200 and seeded.workspace.keys.get("made-here") is not None


def test_keys_are_created_once_shown_and_revoked_sessions_end(app: FastAPI, seeded: Seeded) -> None:
    c, token = sign_in(app, seeded.admin)
    made = c.post(
        "/keys",
        data={"name": "temp-key", "scopes": "det, fast", "rpm": "60", "budget": "3/day", "csrf": token},
    )
    assert made.status_code == 200
    secret = re.search(r'id="new-secret" readonly value="([^"]+)"', made.text)
    assert secret and secret[1].startswith("bky-")
    key = seeded.workspace.keys.get("temp-key")
    assert key and key.scopes == ("det", "fast") and key.rpm == 60 and key.budget_window is Window.day
    assert secret[1] not in c.get("/keys").text  # shown once
    user, _ = sign_in(app, secret[1])
    assert user.get("/usage").status_code == 200
    assert c.post("/keys/temp-key/revoke", data={"csrf": token}).status_code == 200
    assert user.get("/usage").status_code == 303  # the revoked key's session ended at once
    bad = c.post("/keys", data={"name": "bad name!", "scopes": "*", "csrf": token})
    assert bad.status_code == 400 and "key name" in bad.text
    bad = c.post("/keys", data={"name": "ok-name", "scopes": "*", "rpm": "-3", "csrf": token})
    assert bad.status_code == 400 and "rpm must be a positive whole number" in bad.text
    assert c.post("/keys/no-such-key/revoke", data={"csrf": token}).status_code == 404


def test_a_team_key_sees_only_its_own_usage_and_no_admin_page(app: FastAPI, seeded: Seeded) -> None:
    team, token = sign_in(app, seeded.team_b)
    page = team.get("/usage?by=key&span=7d")
    assert page.status_code == 200
    assert "team-b" in page.text and "team-a" not in page.text and "tag-team-a" not in page.text
    assert "endpoint det" not in page.text  # the workspace's endpoint budget is the admins' business
    assert team.get("/usage?by=tag").text.count("tag-team-a") == 0
    assert "bravo" in team.get("/usage/payloads?q=").text
    assert "alpha" not in team.get("/usage/payloads?q=alpha").text
    assert team.get("/keys").status_code == 403
    assert team.post("/keys", data={"name": "sneaky", "scopes": "*", "csrf": token}).status_code == 403
    assert seeded.workspace.keys.get("sneaky") is None
    assert team.post("/keys/team-a/revoke", data={"csrf": token}).status_code == 403
    assert team.post("/sql/jobs", data={"sql": "SELECT 1", "csrf": token}).status_code == 403  # no SQL scope
    assert team.get("/evals").status_code == 200 and seeded.run_id not in team.get("/evals").text  # no agent scope
    assert team.get(f"/evals/{seeded.run_id}").status_code == 404
    admin, _ = sign_in(app, seeded.admin)
    everything = admin.get("/usage?by=key").text
    assert "team-a" in everything and "team-b" in everything and "alpha" in admin.get("/usage/payloads?q=alpha").text


def test_budget_burn_shows_the_ledger_spend_and_a_projection(app: FastAPI, seeded: Seeded) -> None:
    team, _ = sign_in(app, seeded.team_a)
    page = team.get("/usage").text
    assert "key team-a" in page and f"${seeded.team_a_usd:,.4f}" in page and "$0.5000" in page
    start = time.mktime((2026, 3, 1, 0, 0, 0, 0, 0, -1)) - time.timezone
    burn = _burn("x", 10.0, Window.month, 2.0, start + 10 * 86400)  # 2 USD in 10 of March's 31 days
    assert burn.percent == pytest.approx(20) and burn.projected_usd == pytest.approx(6.2)


def _wait(c: TestClient, job_id: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        text = c.get(f"/sql/jobs/{job_id}").text
        if "status-running" not in text:
            return text
        assert time.monotonic() < deadline, "the job did not finish"
        time.sleep(0.1)


def test_sql_jobs_run_with_the_api_checks_and_stay_with_their_key(app: FastAPI, seeded: Seeded) -> None:
    team, token = sign_in(app, seeded.team_a)
    refused = team.post("/sql/jobs", data={"sql": "DROP TABLE tickets", "csrf": token})
    job_id = re.search(r'data-job="([0-9a-f]+)"', refused.text)
    assert job_id
    assert "only runs one read-only SELECT" in _wait(team, job_id[1])
    started = team.post(
        "/sql/jobs",
        data={
            "sql": "SELECT id, ai_query('flaky', body, failOnError => false) AS answer FROM tickets ORDER BY id",
            "csrf": token,
        },
    )
    assert started.headers["hx-push-url"].startswith("/sql?job=")
    job_id = re.search(r'data-job="([0-9a-f]+)"', started.text)
    assert job_id
    done = _wait(team, job_id[1])
    assert "status-done" in done and "120 row(s)" in done and "page 1 of 3" in done
    assert "120 AI calls (17 failed, 0 from the cache)" in done  # every call of the query, from the ledger
    assert done.count('class="row-error"') == 7  # rows 7, 14, ... 49 of the first page say boom
    rows = list(csv.reader(io.StringIO(team.get(f"/sql/jobs/{job_id[1]}/results.csv").text)))
    assert rows[0] == ["id", "answer"] and len(rows) == 121 and "boom" in rows[7][1]
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(team.get(f"/sql/jobs/{job_id[1]}/results.parquet").content))
    assert table.num_rows == 120 and table.column_names == ["id", "answer"]
    answers = table.column("answer").to_pylist()
    assert "boom" in str(answers[6]) and answers[0]["result"].startswith("fine")  # per-row errors kept, typed
    assert team.get(f"/sql?job={job_id[1]}").status_code == 200  # a reload finds the job
    other, _ = sign_in(app, seeded.team_b)
    assert other.get(f"/sql/jobs/{job_id[1]}").status_code == 404
    assert other.get(f"/sql/jobs/{job_id[1]}/results.csv").status_code == 404
    estimate = team.post("/sql/estimate", data={"sql": "SELECT ai_query('det', body) FROM tickets", "csrf": token})
    assert estimate.status_code == 200 and "<b>120</b> model calls" in estimate.text
    nope = team.post("/sql/estimate", data={"sql": "COPY tickets TO '/tmp/x.csv'", "csrf": token})
    assert nope.status_code == 400 and "read-only SELECT" in nope.text


def test_hostile_bodies_are_refused_with_a_reason(app: FastAPI, seeded: Seeded) -> None:
    c, token = sign_in(app, seeded.admin)
    big = c.post(
        "/keys", content=b"name=" + b"a" * 2_000_000, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert big.status_code == 413
    wrong = c.post(
        "/keys", content=b'{"name": "j"}', headers={"Content-Type": "application/json", "X-CSRF-Token": token}
    )
    assert wrong.status_code == 415 and "url-encoded" in wrong.text
    assert c.get("/usage?span=1y").status_code == 400
    assert c.get(f"/evals/{seeded.run_id}?show=everything").status_code == 400
    assert c.get("/evals/../../etc/passwd").status_code in (404, 400)


def test_labels_are_stored_escaped_and_exported_as_a_new_version(app: FastAPI, seeded: Seeded) -> None:
    c, token = sign_in(app, seeded.admin)
    run = c.get(f"/evals/{seeded.run_id}?show=disagreements")
    assert run.status_code == 200 and ("not distinguishable" in run.text or "is better than" in run.text)
    case_id = re.search(r'/cases/([^"]+)"', run.text)
    assert case_id
    saved = c.post(
        f"/evals/{seeded.run_id}/cases/{case_id[1]}/label",
        data={
            "candidate": "mid/zero-shot",
            "verdict": "fail",
            "corrected": '"neg"',
            "comment": "<script>alert(1)</script> wrong",
            "csrf": token,
        },
    )
    assert saved.status_code == 200 and "Label saved" in saved.text
    assert "<script>alert(1)</script>" not in saved.text and "&lt;script&gt;" in saved.text
    bad = c.post(f"/evals/{seeded.run_id}/cases/{case_id[1]}/label", data={"verdict": "maybe", "csrf": token})
    assert bad.status_code == 400
    other = re.findall(r'/cases/([^"]+)"', run.text)[1]
    label_url = f"/evals/{seeded.run_id}/cases/{other}/label"
    assert c.post(label_url, data={"verdict": "pass", "candidate": "good/zero-shot", "csrf": token}).status_code == 200
    assert c.post(label_url, data={"verdict": "", "comment": " ", "csrf": token}).status_code == 200  # cleared
    exported = c.post(f"/evals/{seeded.run_id}/export", data={"csrf": token})
    assert exported.status_code == 200
    version = int(re.search(r"Saved reviews v(\d+)", exported.text)[1])  # type: ignore[index]
    store = seeded.workspace.eval_store
    cases = {c.id: c for c in store.cases("reviews", version)}
    labelled = cases[case_id[1]]
    assert labelled.expected == "neg" and labelled.metadata["human_verdict"] == "fail"
    assert labelled.metadata["human_comment"].endswith("wrong") and "judged_output" in labelled.metadata
    unchanged = [c for i, c in cases.items() if i != case_id[1]]
    assert all("human_verdict" not in c.metadata for c in unchanged)
    as_cases = [Case(id=c.id, input=c.input, expected=c.expected, metadata=c.metadata) for c in cases.values()]
    assert [c.id for c in calibration_cases(as_cases)] == [case_id[1]]  # the judge-agreement tools read it


def test_the_playground_streams_within_the_key_scopes_and_checks_its_input(app: FastAPI, seeded: Seeded) -> None:
    team, token = sign_in(app, seeded.team_b)  # may use `det` only
    assert team.post("/playground/stream", data={"endpoint": "det", "user": "hi"}).status_code == 403  # no token
    refused = team.post("/playground/stream", data={"endpoint": "flaky", "user": "hi", "csrf": token})
    assert refused.status_code == 403 and "may not use `flaky`" in refused.text
    streamed = team.post("/playground/stream", data={"endpoint": "det", "user": "hi there", "csrf": token})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[6:]) for line in streamed.text.split("\n\n") if line.startswith("data: ")]
    assert "".join(e.get("delta", "") for e in events) == "echo: hi there"
    assert events[-1]["done"] and events[-1]["output_tokens"] > 0 and events[-1]["cost_usd"] > 0
    for form, field in (
        ({"endpoint": "det", "user": " "}, "user"),
        ({"endpoint": "det", "user": "x", "max_tokens": "lots"}, "max_tokens"),
        ({"endpoint": "det", "user": "x", "max_tokens": "0"}, "max_tokens"),
        ({"endpoint": "det", "user": "x", "json_schema": "{not json"}, "json_schema"),
        ({"endpoint": "nope", "user": "x"}, "nope"),
    ):
        bad = team.post("/playground/stream", data={**form, "csrf": token})
        assert bad.status_code in (400, 403, 404) and field in bad.text, (form, bad.text[-300:])
    saved = team.post("/playground/save", data={"set": "../etc", "user": "x", "outputs": "{}", "csrf": token})
    assert saved.status_code == 400 and "set:" in saved.text
    outputs = json.dumps({"det": {"text": "echo: hi there"}})
    before = seeded.workspace.eval_store.version("reviews")
    into_theirs = team.post("/playground/save", data={"set": "reviews", "user": "x", "outputs": outputs, "csrf": token})
    assert into_theirs.status_code == 403 and seeded.workspace.eval_store.version("reviews") == before
    made = team.post("/playground/save", data={"set": "pg-b", "user": "hi there", "outputs": outputs, "csrf": token})
    again = team.post("/playground/save", data={"set": "pg-b", "user": "more", "outputs": outputs, "csrf": token})
    assert made.status_code == again.status_code == 200
    assert [c.input for c in seeded.workspace.eval_store.cases("pg-b", 2)] == ["hi there", "more"]


def test_agents_are_listed_diffed_run_and_traced_within_the_key_scopes(app: FastAPI, seeded: Seeded) -> None:
    outsider, outsider_token = sign_in(app, seeded.team_b)  # no agent in its scopes
    assert "sentiment" not in outsider.get("/agents").text
    assert outsider.get("/agents/sentiment").status_code == 404
    ran = outsider.post("/agents/sentiment/run", data={"input": "x", "csrf": outsider_token})
    assert ran.status_code == 404
    team, token = sign_in(app, seeded.team_a)
    page = team.get("/agents/sentiment?a=1&b=2")
    assert page.status_code == 200 and ('class="diff-changed"' in page.text or 'class="diff-added"' in page.text)
    assert "overall sentiment" in page.text
    assert team.get("/agents/sentiment?a=1&b=9").status_code == 404
    assert team.post("/agents/sentiment/run", data={"input": "a fine film"}).status_code == 403  # no token
    assert team.post("/agents/sentiment/run", data={"input": "  ", "csrf": token}).status_code == 400
    ran = team.post("/agents/sentiment/run", data={"input": "case 4: a fine film", "csrf": token})
    assert ran.status_code == 200
    run_id = re.search(r'href="/agents/runs/([0-9a-f]+)"', ran.text)
    assert run_id
    trace = team.get(f"/agents/runs/{run_id[1]}")
    assert trace.status_code == 200 and "case 4: a fine film" in trace.text and "<td>model</td>" in trace.text
    assert outsider.get(f"/agents/runs/{run_id[1]}").status_code == 404


def _follow_eval(c: TestClient, job_id: str, wanted: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        text = c.get(f"/evals/jobs/{job_id}").text
        if wanted in text:
            return text
        assert "status-running" in text, text[-800:]
        assert time.monotonic() < deadline, f"{wanted} not reached: {text[-1500:]}"
        time.sleep(0.2)


def test_sweeps_run_as_jobs_for_admins_and_can_be_cancelled(app: FastAPI, seeded: Seeded) -> None:
    team, team_token = sign_in(app, seeded.team_a)
    form = {"agent": "sentiment", "dataset": "reviews", "candidates": "mid/zero-shot"}
    assert team.post("/evals/launch", data={**form, "csrf": team_token}).status_code == 403
    assert team.post(f"/evals/{seeded.run_id}/rerun", data={"csrf": team_token}).status_code == 403
    c, token = sign_in(app, seeded.admin)
    assert c.post("/evals/launch", data={**form, "max_cost": "-1", "csrf": token}).status_code == 400
    started = c.post("/evals/launch", data={**form, "csrf": token})
    assert started.headers["hx-push-url"].startswith("/evals?job=")
    job_id = re.search(r'data-job="([0-9a-f]+)"', started.text)[1]  # type: ignore[index]
    done = _follow_eval(c, job_id, "status-done")
    run_id = re.search(r'href="/evals/([^"]+)">open evaluation', done)[1]  # type: ignore[index]
    rec = seeded.workspace.eval_store.run(run_id)
    assert rec is not None and [x["id"] for x in rec["candidates"]] == ["mid/zero-shot"]
    assert c.get(f"/evals?job={job_id}").status_code == 200  # a reload finds the job
    assert team.get(f"/evals/jobs/{job_id}").status_code == 403
    unknown = c.post("/evals/launch", data={**form, "agent": "nope", "csrf": token})
    assert "no agent `nope`" in _follow_eval(c, re.search(r'data-job="([0-9a-f]+)"', unknown.text)[1], "status-failed")  # type: ignore[index]
    slow = c.post("/evals/launch", data={**form, "candidates": "slow/zero-shot", "csrf": token})
    slow_id = re.search(r'data-job="([0-9a-f]+)"', slow.text)[1]  # type: ignore[index]
    time.sleep(0.5)
    assert c.post(f"/evals/jobs/{slow_id}/cancel", data={"csrf": token}).status_code == 200
    _follow_eval(c, slow_id, "status-cancelled")
    assert c.get(f"/sql/jobs/{slow_id}").status_code == 404  # an evaluation job is not a query job


def test_logout_needs_the_token_and_ends_the_session(app: FastAPI, seeded: Seeded) -> None:
    c, token = sign_in(app, seeded.admin)
    assert c.post("/logout").status_code == 403
    assert c.get("/usage").status_code == 200
    assert c.post("/logout", data={"csrf": token}).status_code == 303
    assert c.get("/usage").status_code == 303


def test_rollups_add_up_to_the_ledger_and_see_new_usage_at_once(tmp_path: Path) -> None:
    from brickyard import Workspace
    from brickyard.store.base import UsageRecord
    from brickyard.web.usage import Rollups, overview

    ws = Workspace.init(tmp_path / "r")
    now = time.time()
    for i in range(200):
        ws.store.record_usage(
            UsageRecord(ts=now - i * 900, endpoint=f"e{i % 3}", model="m", key=f"k{i % 2}", cost_usd=0.001 * i)
        )
    ws.store.flush()
    rollups = Rollups()
    since = now - 3 * 86400
    for key in (None, "k1"):
        chart, endpoints = overview(ws.store, rollups, key=key, since=since, bucket="hour", by="key")
        direct = ws.store.summarize(["endpoint"], since=since - 3600, key=key)
        assert {e["endpoint"]: e["calls"] for e in endpoints} == {r.group[0]: r.calls for r in direct}
        assert sum(e["cost_usd"] for e in endpoints) == pytest.approx(sum(r.cost_usd for r in direct))
        assert key is None or [s["name"] for s in chart["series"]] == [key]  # a key's figures only
    ws.store.record_usage(UsageRecord(ts=time.time(), endpoint="fresh", model="m", key="k1", cost_usd=5.0))
    ws.store.flush()
    _, endpoints = overview(ws.store, rollups, key="k1", since=since, bucket="hour", by="key")
    assert {e["endpoint"] for e in endpoints} >= {"fresh"}  # the open hour is read live, past the cache
    _, endpoints = overview(ws.store, rollups, key="k0", since=since, bucket="day", by="endpoint")
    assert "fresh" not in {e["endpoint"] for e in endpoints}
    ws.store.close()


def test_sessions_expire_when_idle_are_bounded_and_stored_hashed(tmp_path: Path) -> None:
    now = [1000.0]
    store = ConsoleStore(tmp_path / "console.sqlite")
    sessions = Sessions(store, idle_s=60, max_sessions=3, clock=lambda: now[0])
    first = sessions.create("a")
    now[0] += 59
    assert sessions.get(first.id) == first
    now[0] += 61
    assert sessions.get(first.id) is None
    made = [sessions.create(str(i)) for i in range(5)]
    assert len(sessions) == 3 and sessions.get(made[0].id) is None and sessions.get(made[-1].id) is not None
    assert not made[-1].csrf_matches(None) and not made[-1].csrf_matches("") and made[-1].csrf_matches(made[-1].csrf)
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("console.sqlite*"))
    assert made[-1].id.encode() not in stored and made[-1].csrf.encode() in stored  # only the id's hash is kept
    other = Sessions(ConsoleStore(tmp_path / "console.sqlite"), idle_s=60, clock=lambda: now[0])
    assert other.get(made[-1].id) == made[-1]  # another worker process sees the same session
    assert other.get("x" * 10_000) is None


def test_the_open_server_lets_loopback_in_without_a_key_until_the_first_key(tmp_path: Path) -> None:
    from brickyard import Workspace
    from brickyard.server.runner import BackgroundServer

    ws = Workspace.init(tmp_path / "open")
    app = create_app(ws)
    stranger = TestClient(app, base_url=ORIGIN, follow_redirects=False)  # the test client is not loopback
    assert stranger.post("/login", data={"key": ""}).status_code == 401
    with BackgroundServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as local:
        assert "sign in with the field empty" in local.get("/login").text
        assert local.post("/login", data={"key": ""}).status_code == 303
        page = local.get("/keys")
        assert page.status_code == 200 and "local (open server)" in page.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]  # type: ignore[index]
        made = local.post("/keys", data={"name": "first", "scopes": "*", "admin": "on", "csrf": token})
        assert made.status_code == 200 and ws.keys.get("first") is not None
        deadline = time.monotonic() + 5
        while local.get("/usage").status_code == 200:  # the server is no longer open: the keyless session ends
            assert time.monotonic() < deadline, "a keyless session outlived the first key"
            time.sleep(0.2)
        assert local.post("/login", data={"key": ""}).status_code == 401


def test_two_worker_processes_share_sessions_and_query_jobs(tmp_path: Path) -> None:
    import duckdb
    from conftest import SERVER_CONFIG, make_key
    from test_server_workers import brickyard_serve

    from brickyard import Workspace

    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(SERVER_CONFIG, encoding="utf-8")
    key = make_key(ws, "analyst", sql=True)
    con = duckdb.connect(str(ws.warehouse_path))
    con.execute("CREATE TABLE tickets AS SELECT i AS id, 'ticket ' || i AS body FROM range(1, 121) t(i)")
    con.close()
    with brickyard_serve(ws, 2, tmp_path / "serve.log") as (_, url):
        pids = {httpx_get(url, "/readyz").json()["pid"] for _ in range(20)}
        assert len(pids) == 2, "both workers should answer"
        signed = httpx_post(url, "/login", {"key": key}, cookies={}, headers={"Origin": url})
        cookies = {COOKIE: signed.cookies[COOKIE]}
        pages = [httpx_get(url, "/usage", cookies=cookies) for _ in range(12)]  # a new connection each time
        assert [p.status_code for p in pages] == [200] * 12
        token = re.search(r'name="csrf" value="([^"]+)"', pages[0].text)[1]  # type: ignore[index]
        sql = "SELECT id, ai_query('det', body) AS answer FROM tickets ORDER BY id"
        started = httpx_post(url, "/sql/jobs", {"sql": sql, "csrf": token}, cookies=cookies)
        job = re.search(r'data-job="([0-9a-f]+)"', started.text)[1]  # type: ignore[index]
        assert "120 row(s)" in _poll(url, job, cookies, "status-done")
        heavy = "SELECT count(*) FROM tickets a, tickets b, tickets c, tickets d, tickets e, tickets f"
        started = httpx_post(url, "/sql/jobs", {"sql": heavy, "csrf": token}, cookies=cookies)
        job = re.search(r'data-job="([0-9a-f]+)"', started.text)[1]  # type: ignore[index]
        for _ in range(3):  # whichever worker answers, the one running the query stops it
            httpx_post(url, f"/sql/jobs/{job}/cancel", {"csrf": token}, cookies=cookies)
        _poll(url, job, cookies, "status-cancelled")


def httpx_get(url: str, path: str, *, cookies: dict[str, str] | None = None) -> httpx.Response:
    """A GET on a new connection (so the two workers take turns at random)."""
    with httpx.Client(base_url=url, timeout=30, cookies=cookies) as fresh:
        return fresh.get(path)


def httpx_post(
    url: str, path: str, data: dict[str, str], *, cookies: dict[str, str] | None = None, **options: Any
) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=30, cookies=cookies) as fresh:
        return fresh.post(path, data=data, **options)


def _poll(url: str, job: str, cookies: dict[str, str], wanted: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        text = httpx_get(url, f"/sql/jobs/{job}", cookies=cookies).text
        if wanted in text:
            return text
        assert "status-running" in text, text[-500:]
        assert time.monotonic() < deadline, f"{wanted} not reached"
        time.sleep(0.2)


def test_demo_names_the_console_and_serves_it_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console as RichConsole

    from brickyard import Workspace
    from brickyard.server import runner
    from brickyard.server.keys import hash_secret
    from brickyard.web.demo import console_hint

    ws = Workspace.init(tmp_path / "demo")
    served: list[tuple[Path, int]] = []
    monkeypatch.setattr(runner, "serve", lambda path, host, port: served.append((path, port)))
    quiet = RichConsole(record=True, width=200)
    console_hint(ws, quiet, serve=False)
    assert "http://127.0.0.1:8080/" in quiet.export_text() and served == [] and ws.keys.count() == 0
    loud = RichConsole(record=True, width=200)
    console_hint(ws, loud, serve=True)
    secret = re.search(r"(bky-\S+)", loud.export_text())
    assert secret and served == [(ws.path.resolve(), 8080)]
    key = ws.keys.by_hash(hash_secret(secret[1]))
    assert key is not None and key.admin and key.active
