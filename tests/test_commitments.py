"""Commitments: config checks, the burn-down from a controlled ledger, the CLI and API, commitment-aware routing."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from brickyard import ConfigError
from brickyard.commitments import BurnDown, Status, burn_down, burn_downs, day_start
from brickyard.config import DEFAULT_TOML, Settings, load_settings, parse_settings
from brickyard.config_commitments import CommitmentConfig, add_months, period_bounds
from brickyard.store.base import Store, UsageRecord
from brickyard.store.sqlite import SQLiteStore

ENDPOINTS: dict[str, Any] = {
    "a": {"model": "openai:gpt-a"},
    "b": {"model": "openai:gpt-b"},
    "c": {"model": "anthropic:claude-c"},
    "ab": {"split": {"a": 1, "b": 1}},
}


def settings(*commitments: dict[str, Any], aliases: dict[str, str] | None = None) -> Settings:
    return parse_settings(
        {"endpoints": ENDPOINTS, "aliases": aliases or {}, "commitments": list(commitments)}, "b.toml"
    )


def commitment(**over: Any) -> dict[str, Any]:
    return {"name": "c1", "provider": "openai", "amount_usd": 3000, "start": "2026-01-01", "end": "2026-01-30", **over}


def ts(text: str) -> float:
    """Unix seconds of an ISO time in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# -- config -----------------------------------------------------------------------------------------------


def test_commitments_parse_with_toml_dates(tmp_path: Path) -> None:
    path = tmp_path / "brickyard.toml"
    path.write_text(
        '[endpoints.a]\nmodel = "openai:gpt-a"\n[endpoints.c]\nmodel = "anthropic:claude-c"\n'
        '[[commitments]]\nname = "oa"\nprovider = "openai"\namount_usd = 1000\nstart = 2026-01-01\n'
        'end = 2026-12-31\nperiod = "month"\n'
        '[[commitments]]\nname = "an"\nendpoints = ["c"]\namount_usd = 500.5\nstart = 2026-03-01\nend = 2026-03-31\n',
        encoding="utf-8",
    )
    loaded = load_settings(path)
    oa, an = loaded.commitments
    assert (oa.start, oa.end, oa.period, oa.amount_usd) == (date(2026, 1, 1), date(2026, 12, 31), "month", 1000)
    assert len(period_bounds(oa)) == 12 and period_bounds(an) == [(date(2026, 3, 1), date(2026, 4, 1))]


def test_the_default_files_commitment_example_is_valid() -> None:
    example = re.compile(r"^# (\[\[?[\w.-]+\]\]?|[a-z_0-9]+ = .+)$")
    text = "\n".join(line[2:] if example.match(line) else line for line in DEFAULT_TOML.splitlines())
    import tomllib

    loaded = parse_settings(tomllib.loads(text), "default")
    (c,) = loaded.commitments
    assert c.provider == "openai" and c.period == "month" and len(period_bounds(c)) == 12


@pytest.mark.parametrize(
    ("given", "key", "problem", "fix"),
    [
        (
            [commitment(), commitment(name="c2", endpoints=["a"], provider=None, start="2026-01-30", end="2026-02-28")],
            "commitments[1]",
            "overlaps commitments[0] (`c1`) on endpoint a from 2026-01-30 to 2026-01-30",
            "start one after the other ends (2026-01-30)",
        ),
        (
            [commitment(), commitment(name="c2", provider=None, endpoints=["fast"], start="2026-01-15")],
            "commitments[1]",
            "on endpoint a from 2026-01-15 to 2026-01-30",  # an alias of a covered endpoint overlaps too
            "cover other endpoints",
        ),
        ([commitment(end="2025-12-31")], "commitments[0].end", "2025-12-31 is before start 2026-01-01", "on or after"),
        ([commitment(amount_usd=-5)], "commitments[0].amount_usd", "-5 USD is not a commitment", "greater than 0"),
        ([commitment(amount_usd=0)], "commitments[0].amount_usd", "0 USD is not a commitment", "greater than 0"),
        (
            [commitment(provider=None, endpoints=["nope"])],
            "commitments[0].endpoints",
            "`nope` is not a defined endpoint or alias",
            "define [endpoints.nope]",
        ),
        (
            [commitment(provider=None, endpoints=["ab"])],
            "commitments[0].endpoints",
            "`ab` sends its calls to other endpoints",
            "list the endpoints that serve the calls",
        ),
        (
            [commitment(provider="mistral")],
            "commitments[0].provider",
            "no endpoint uses provider `mistral`",
            "mistral:",
        ),
        ([commitment(endpoints=["a"])], "commitments[0]", "exactly one of `provider` or `endpoints`", "keep one"),
        ([commitment(provider=None)], "commitments[0]", "exactly one of `provider` or `endpoints`", "keep one"),
        (
            [commitment(period="month", end="2026-03-15")],
            "commitments[0].end",
            "2026-03-15 does not end a whole month counted from 2026-01-01",
            "end on 2026-02-28 or 2026-03-31",
        ),
        ([commitment(), commitment(start="2027-01-01", end="2027-01-02")], "commitments[1].name", "also the name", ""),
        ([commitment(period="week")], "commitments.0.period", "'month', 'quarter' or 'year'", "use one of"),
        ([commitment(amount_usd="lots")], "commitments.0.amount_usd", "valid number", ""),
        ([commitment(start="yesterday")], "commitments.0.start", "valid date", ""),
        ([commitment(amont_usd=3)], "commitments.0.amont_usd", "Extra inputs", "spelling"),
    ],
    ids=[
        "overlap",
        "overlap-through-alias",
        "end-before-start",
        "negative",
        "zero",
        "unknown-endpoint",
        "split-endpoint",
        "unknown-provider",
        "both-scopes",
        "no-scope",
        "partial-period",
        "duplicate-name",
        "bad-period",
        "amount-not-number",
        "bad-date",
        "unknown-key",
    ],
)
def test_bad_commitments_name_file_key_and_fix(given: list[dict[str, Any]], key: str, problem: str, fix: str) -> None:
    raw = {"endpoints": ENDPOINTS, "aliases": {"fast": "a"}, "commitments": given}
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, "/ws/brickyard.toml")
    err = caught.value
    assert (err.file, err.key) == ("/ws/brickyard.toml", key)
    assert str(err).startswith(f"/ws/brickyard.toml: `{key}`: ") and "\n" not in str(err)
    assert problem in err.problem and fix in err.fix and "Fix: " in str(err)


def test_commitments_on_different_endpoints_or_after_each_other_do_not_overlap() -> None:
    loaded = settings(
        commitment(),
        commitment(name="next", start="2026-01-31", end="2026-02-28"),
        commitment(name="anthropic", provider="anthropic"),
        commitment(name="other", provider=None, endpoints=["c"], start="2026-02-01", end="2026-02-01"),
    )
    assert [c.name for c in loaded.commitments] == ["c1", "next", "anthropic", "other"]


def test_add_months_clamps_to_the_months_last_day() -> None:
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2024, 1, 31), 1) == date(2024, 2, 29)
    assert add_months(date(2026, 1, 31), 2) == date(2026, 3, 31)  # counted from the start, not chained
    assert add_months(date(2026, 11, 15), 3) == date(2027, 2, 15)
    c = CommitmentConfig.model_validate(commitment(start="2026-01-31", end="2026-04-29", period="month"))
    assert period_bounds(c) == [
        (date(2026, 1, 31), date(2026, 2, 28)),
        (date(2026, 2, 28), date(2026, 3, 31)),
        (date(2026, 3, 31), date(2026, 4, 30)),
    ]


# -- burn-down from a controlled ledger -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = SQLiteStore(tmp_path / "ledger.sqlite")
    yield s
    s.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The ledger on each backend: the burn-down must read the same numbers from both."""
    if request.param == "sqlite":
        s: Any = SQLiteStore(tmp_path / "ledger.sqlite")
    else:
        from brickyard.store.postgres import PostgresStore

        s = PostgresStore(str(request.getfixturevalue("postgres_url")))
    yield s
    s.close()


def spend(store: Store, when: str, usd: float, endpoint: str = "a") -> None:
    store.record_usage(UsageRecord(ts=ts(when), endpoint=endpoint, model="m", cost_usd=usd))


def only(s: Settings, store: Store, now: str) -> BurnDown:
    (bd,) = burn_downs(s, store, ts(now))
    return bd


def test_under_use_from_hand_computed_numbers(any_store: Store) -> None:
    """3,000 USD over 30 days; at day 10, 650 spent (450 in the last 7 days): behind by 350, projected
    650 + 450/7 × 20 = 1,935.71, a shortfall of 1,064.29."""
    spend(any_store, "2025-12-31T23:59:59", 777)  # before the start
    spend(any_store, "2026-01-01T00:00:00", 150)  # the first second counts
    spend(any_store, "2026-01-02T12:00:00", 50)
    spend(any_store, "2026-01-06T12:00:00", 300, endpoint="b")  # covered: provider openai
    spend(any_store, "2026-01-09T00:00:00", 100)
    spend(any_store, "2026-01-10T23:59:59", 50)
    spend(any_store, "2026-01-05T00:00:00", 999, endpoint="c")  # anthropic: not covered
    spend(any_store, "2026-01-11T00:00:00", 555)  # at `now`: not yet
    bd = only(settings(commitment()), any_store, "2026-01-11T00:00:00")
    assert bd.endpoints == ["a", "b"]
    assert bd.spent_usd == pytest.approx(650)
    assert bd.expected_usd == pytest.approx(1000)
    assert bd.behind_usd == pytest.approx(350) and bd.behind_fraction == pytest.approx(350 / 3000)
    assert bd.recent_days == 7 and bd.rate_usd_per_day == pytest.approx(450 / 7)
    assert bd.projected_usd == pytest.approx(650 + 450 / 7 * 20)
    assert bd.shortfall_usd == pytest.approx(3000 - 650 - 450 / 7 * 20)
    assert bd.status is Status.under_used and not bd.ended and bd.exhausted_on is None
    assert bd.alert == "will be under-used (projected 1,935.71 of 3,000.00 USD, shortfall 1,064.29)"
    assert (bd.window_start, bd.window_end, bd.period_index, bd.periods) == (date(2026, 1, 1), date(2026, 1, 30), 1, 1)


def test_over_use_names_the_day_the_amount_runs_out(store: SQLiteStore) -> None:
    """2,300 spent by day 10, 2,100 of it in the last 7 days (300/day): the 700 left last 2⅓ days."""
    spend(store, "2026-01-02T00:00:00", 200)
    for day in range(4, 11):
        spend(store, f"2026-01-{day:02d}T06:00:00", 300)
    bd = only(settings(commitment()), store, "2026-01-11T00:00:00")
    assert bd.spent_usd == pytest.approx(2300) and bd.rate_usd_per_day == pytest.approx(300)
    assert bd.projected_usd == pytest.approx(2300 + 300 * 20)
    assert bd.exhausted_on == date(2026, 1, 13)  # 2026-01-11 + 700/300 days = 01-13 08:00
    assert bd.status is Status.over_used and bd.shortfall_usd == 0
    assert bd.alert == "will be over-used by 2026-01-13 (projected 8,300.00 of 3,000.00 USD)"


def test_already_over_and_on_track(store: SQLiteStore) -> None:
    for day in range(1, 11):
        spend(store, f"2026-01-{day:02d}T12:00:00", 100)
    bd = only(settings(commitment()), store, "2026-01-11T00:00:00")
    assert bd.spent_usd == pytest.approx(1000) and bd.projected_usd == pytest.approx(3000)
    assert bd.status is Status.on_track and bd.behind_usd == pytest.approx(0)
    spend(store, "2026-01-11T01:00:00", 2500)
    bd = only(settings(commitment()), store, "2026-01-11T02:00:00")
    assert bd.status is Status.over_used and bd.alert == "over-used: spent 3,500.00 of 3,000.00 USD"


def test_tolerance_edge_is_on_track(store: SQLiteStore) -> None:
    """Projected exactly 95% of the amount is on track; a cent less is under-used."""
    for day in range(1, 11):
        spend(store, f"2026-01-{day:02d}T12:00:00", 95)  # rate 95/day: projected 95 × 30 = 2,850 = 0.95 × 3,000
    assert only(settings(commitment()), store, "2026-01-11T00:00:00").status is Status.on_track
    spend(store, "2026-01-01T13:00:00", -0.01)  # a refund before the recent window
    assert only(settings(commitment()), store, "2026-01-11T00:00:00").status is Status.under_used


def test_a_periodic_commitment_is_measured_in_its_current_period(store: SQLiteStore) -> None:
    s = settings(commitment(amount_usd=1000, end="2026-03-31", period="month"))
    spend(store, "2026-01-20T00:00:00", 900)  # January's: not February's
    spend(store, "2026-02-01T00:00:00", 30)
    spend(store, "2026-02-03T00:00:00", 60)
    bd = only(s, store, "2026-02-04T00:00:00")  # 3 days into a 28-day February
    assert (bd.window_start, bd.window_end, bd.period_index, bd.periods) == (date(2026, 2, 1), date(2026, 2, 28), 2, 3)
    assert bd.spent_usd == pytest.approx(90) and bd.expected_usd == pytest.approx(1000 * 3 / 28)
    assert bd.recent_days == pytest.approx(3) and bd.rate_usd_per_day == pytest.approx(30)  # since the period opened
    assert bd.projected_usd == pytest.approx(90 + 30 * 25)


def test_before_the_start_and_after_the_end(store: SQLiteStore) -> None:
    s = settings(commitment())
    spend(store, "2026-01-15T00:00:00", 1000)
    spend(store, "2026-01-30T23:59:59", 500)  # the last second of the last day
    spend(store, "2026-01-31T00:00:00", 400)  # after the end
    early = only(s, store, "2025-12-20T00:00:00")
    assert early.status is Status.not_started and early.spent_usd == 0 and early.alert == "starts on 2026-01-01"
    late = only(s, store, "2026-03-01T00:00:00")
    assert late.ended and late.spent_usd == pytest.approx(1500) and late.expected_usd == pytest.approx(3000)
    assert late.projected_usd == pytest.approx(1500) and late.shortfall_usd == pytest.approx(1500)
    assert late.status is Status.under_used and late.alert.startswith("was under-used (projected 1,500.00")


def test_usage_queued_but_not_yet_written_counts(tmp_path: Path) -> None:
    """The ledger buffers writes: a burn-down read right after a call sees it."""
    writer = SQLiteStore(tmp_path / "l.sqlite")
    reader = SQLiteStore(tmp_path / "l.sqlite")
    try:
        for i in range(200):
            writer.record_usage(UsageRecord(ts=ts("2026-01-05T00:00:00") + i, endpoint="a", model="m", cost_usd=1.5))
        assert only(settings(commitment()), reader, "2026-01-11T00:00:00").spent_usd == pytest.approx(300)
    finally:
        writer.close()
        reader.close()


def test_burn_down_rejects_a_nonsense_recent_window(store: SQLiteStore) -> None:
    with pytest.raises(ValueError, match="recent_days"):
        burn_downs(settings(commitment()), store, ts("2026-01-11T00:00:00"), recent_days=0)


def test_as_dict_is_plain_json_data(store: SQLiteStore) -> None:
    import json

    c = CommitmentConfig.model_validate(commitment())
    bd = burn_down(c, ["a"], store, day_start(date(2026, 1, 11)))
    data = json.loads(json.dumps(bd.as_dict()))
    assert data["window_start"] == "2026-01-01" and data["status"] == "under-used" and data["exhausted_on"] is None


# -- the CLI and the API, run as a user would ------------------------------------------------------------

TODAY = datetime.now(tz=UTC).date()


def around_today(days_before: int = 10, days_after: int = 19) -> tuple[str, str]:
    from datetime import timedelta

    return str(TODAY - timedelta(days=days_before)), str(TODAY + timedelta(days=days_after))


def live_config() -> str:
    """`oa` runs from 10 days ago for 30 days (3,000 USD on a and b); `old` ended in January 2025."""
    start, end = around_today()
    return f"""
[endpoints.a]
model = "openai:gpt-a"
[endpoints.b]
model = "openai:gpt-b"
[endpoints.c]
model = "anthropic:claude-c"

[[commitments]]
name = "oa"
provider = "openai"
amount_usd = 3000
start = {start}
end = {end}

[[commitments]]
name = "old"
endpoints = ["c"]
amount_usd = 100
start = 2025-01-01
end = 2025-01-31
"""


def seed_live_ledger(path: Path) -> None:
    """650 USD on openai endpoints in `oa`'s window (350 of it in the last 7 days), 120 on c in January 2025."""
    import time

    now = time.time()
    store = SQLiteStore(path)
    try:
        store.record_usage(UsageRecord(ts=now - 9.5 * 86400, endpoint="a", model="m", cost_usd=300))
        store.record_usage(UsageRecord(ts=now - 2 * 86400, endpoint="b", model="m", cost_usd=350))
        store.record_usage(UsageRecord(ts=now - 2 * 86400, endpoint="c", model="m", cost_usd=9999))  # not covered
        store.record_usage(UsageRecord(ts=ts("2025-01-15T00:00:00"), endpoint="c", model="m", cost_usd=120))
    finally:
        store.close()


def check_live(rows: list[dict[str, Any]]) -> None:
    oa, old = rows
    assert oa["name"] == "oa" and oa["endpoints"] == ["a", "b"]
    assert oa["spent_usd"] == pytest.approx(650) and oa["status"] == "under-used" and not oa["ended"]
    assert 1000 <= oa["expected_usd"] <= 1100  # 10 to 11 days of 30, by the time of day
    assert oa["rate_usd_per_day"] == pytest.approx(50) and oa["recent_days"] == 7
    assert old["ended"] and old["spent_usd"] == pytest.approx(120) and old["status"] == "over-used"
    assert old["alert"] == "ended: over-used: spent 120.00 of 100.00 USD"


def test_cli_usage_commitments_table_and_json(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    home = tmp_path / "ws"
    home.mkdir()
    (home / "brickyard.toml").write_text(live_config(), encoding="utf-8")
    seed_live_ledger(home / "ledger.sqlite")
    binary = Path(sys.executable).parent / "brickyard"
    env = {**os.environ, "BRICKYARD_HOME": str(home)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=120)

    table = run("usage", "--commitments")
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "last 7 days" in text and "oa" in text and "650.00" in text and "3,000.00" in text
    assert "oa: will be under-used (projected " in text and "old: ended: over-used: spent 120.00 of 100.00 USD" in text
    as_json = run("usage", "--commitments", "--json")
    check_live(json.loads(as_json.stdout))
    refused = run("usage", "--commitments", "--since", "7d")
    assert refused.returncode == 1 and "--since does not apply to --commitments" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    (home / "brickyard.toml").write_text(live_config().replace("end = 2025-01-31", "end = 2024-12-31"))
    broken = run("usage", "--commitments")
    assert broken.returncode == 1 and "`commitments[1].end`" in broken.stderr and "Fix:" in broken.stderr
    (home / "brickyard.toml").write_text("")
    assert "no [[commitments]]" in run("usage", "--commitments").stdout


def test_api_commitments_on_a_real_server(tmp_path: Path, serve: Any) -> None:
    import httpx
    from conftest import make_key

    from brickyard import Workspace

    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(live_config(), encoding="utf-8")
    seed_live_ledger(ws.ledger_path)
    ws = Workspace(ws.path)
    admin = make_key(ws, "boss", admin=True)
    user = make_key(ws, "team-a")
    server = serve(ws)
    ok = httpx.get(server.url + "/api/commitments", headers={"Authorization": f"Bearer {admin}"}, timeout=30)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["recent_days"] == 7 and body["now"] > 0
    check_live(body["commitments"])
    denied = httpx.get(server.url + "/api/commitments", headers={"Authorization": f"Bearer {user}"}, timeout=30)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "admin_only"
    assert user not in denied.text and admin not in denied.text
    assert httpx.get(server.url + "/api/commitments", timeout=30).status_code == 401
    spec = httpx.get(server.url + "/openapi.json", timeout=30).json()
    assert "/api/commitments" in spec["paths"]


# -- commitment-aware routing -----------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def evaluation(equivalent: bool, *, strategy: str = "zero-shot", partial: bool = False) -> dict[str, Any]:
    """An evaluation record shaped as `brickyard eval run` stores it: a/zero-shot best, c/<strategy> tested."""
    return {
        "run_id": "run-1",
        "partial": partial,
        "chosen": "a/zero-shot",
        "candidates": [
            {"id": "a/zero-shot", "endpoint": "a"},
            {"id": f"c/{strategy}", "endpoint": "c"},
        ],
        "equivalence": {f"c/{strategy}": {"best": "a/zero-shot", "equivalent": equivalent}},
    }


def route_settings() -> Settings:
    return settings(
        commitment(name="oa", provider=None, endpoints=["a"]),
        commitment(name="an", provider="anthropic"),
    )


def chooser(store: SQLiteStore, clock: Clock, record: dict[str, Any] | None, calls: list[str] | None = None) -> Any:
    from brickyard.config_commitments import RouteConfig
    from brickyard.models.commitment_route import CommitmentChooser

    def evidence(agent: str) -> dict[str, Any] | None:
        if calls is not None:
            calls.append(agent)
        return record

    config = RouteConfig(candidates=["a", "c"], agent="sentiment", refresh_s=60)
    return CommitmentChooser("pool", config, route_settings(), store, evidence, clock=clock)


def test_the_equivalent_endpoint_most_behind_takes_the_traffic_until_it_catches_up(store: SQLiteStore) -> None:
    """At day 10 of 30 (1,000 USD expected of each 3,000): a spent 900 (3.3% behind), c 100 (30% behind)."""
    spend(store, "2026-01-05T00:00:00", 900, endpoint="a")
    spend(store, "2026-01-05T00:00:00", 100, endpoint="c")
    clock = Clock(ts("2026-01-11T00:00:00"))
    route = chooser(store, clock, evaluation(equivalent=True))
    first = route.decision()
    assert first.chose == "c" and first.behind == pytest.approx({"a": 0.1 / 3, "c": 0.3})
    assert "an is 30.0% behind schedule" in first.reason and "run-1" in first.reason
    spend(store, "2026-01-11T00:00:30", 1000, endpoint="c")  # c catches up: 1,100 spent, ahead of schedule
    clock.now += 59
    assert route.decision().chose == "c"  # decided for 60 s
    clock.now += 1
    second = route.decision()
    assert second.chose == "a" and second.behind["c"] < 0 < second.behind["a"]
    spend(store, "2026-01-11T00:01:30", 200, endpoint="a")  # now both are ahead
    clock.now += 60
    third = route.decision()
    assert third.chose == "a" and "no commitment of the equivalent endpoints (a, c) is behind" in third.reason


def test_without_equivalence_traffic_does_not_move(store: SQLiteStore) -> None:
    spend(store, "2026-01-05T00:00:00", 1000, endpoint="a")  # a on schedule; c has spent nothing (33% behind)
    now = Clock(ts("2026-01-11T00:00:00"))
    not_equivalent = chooser(store, now, evaluation(equivalent=False)).decision()
    assert not_equivalent.chose == "a" and "did not find c equivalent to a" in not_equivalent.reason
    other_strategy = chooser(store, now, evaluation(equivalent=True, strategy="few-shot-3")).decision()
    assert other_strategy.chose == "a"  # equivalent with few-shot, but the agent runs zero-shot
    assert chooser(store, now, evaluation(equivalent=True, partial=True)).decision().chose == "a"
    never = chooser(store, now, None).decision()
    assert never.chose == "a" and "no evaluation of agent sentiment" in never.reason
    assert chooser(store, now, evaluation(equivalent=True)).decision().chose == "c"  # the control: it would move


def test_an_endpoint_without_an_active_commitment_is_never_preferred(store: SQLiteStore) -> None:
    late = Clock(ts("2026-02-15T00:00:00"))  # both commitments ended
    decision = chooser(store, late, evaluation(equivalent=True)).decision()
    assert decision.chose == "a" and decision.behind == {}


async def test_concurrent_calls_share_one_decision(store: SQLiteStore) -> None:
    import asyncio

    from brickyard import FakeModel
    from brickyard.models.commitment_route import CommitmentRouteModel

    spend(store, "2026-01-05T00:00:00", 900, endpoint="a")  # a 3.3% behind, c 33.3%
    asked: list[str] = []
    route = chooser(store, Clock(ts("2026-01-11T00:00:00")), evaluation(equivalent=True), asked)
    a, c = FakeModel(["from a"], name="fake:a"), FakeModel(["from c"], name="fake:c")
    model = CommitmentRouteModel([("a", a), ("c", c)], route, name="pool")
    from brickyard.models._types import ChatRequest

    replies = await asyncio.gather(*(model.complete(ChatRequest.from_prompt(f"q{i}")) for i in range(50)))
    assert {r.text for r in replies} == {"from c"} and asked == ["sentiment"]


def routed_config(second: str) -> str:
    """Endpoints good, twin and mid; a route `pool` over good and `second`; a commitment on each endpoint from
    10 days ago for 30 days (3,000 USD each)."""
    start, end = around_today()
    blocks = [
        f'[endpoints.{name}]\nmodel = "fake:{name}"\nprice_input_per_1m = {price}\nprice_output_per_1m = {price}\n'
        f'cache = false\n\n[[commitments]]\nname = "{name}-deal"\nendpoints = ["{name}"]\namount_usd = 3000\n'
        f"start = {start}\nend = {end}\n"
        for name, price in (("good", 4.0), ("twin", 1.0), ("mid", 1.0))
    ]
    pool = (
        f'[endpoints.pool]\nroute = {{ by = "commitments", candidates = ["good", "{second}"], agent = "sentiment" }}\n'
    )
    return "\n".join([*blocks, pool])


async def evaluated_workspace(tmp_path: Path, second: str) -> Any:
    """A workspace where the real evaluator compared good with `second` for agent `sentiment` (twin answers
    exactly as good does; mid is right 80% of the time against good's 90%), and where good's commitment is on
    schedule (900 of about 1,000 spent) and `second`'s far behind (100 spent)."""
    import random
    import time

    from brickyard import FunctionModel, Workspace
    from brickyard.agents.runner import Agents
    from brickyard.agents.spec import parse_spec
    from brickyard.config import EndpointConfig
    from brickyard.evals import Case, EvalDatasets, evaluate
    from brickyard.models._types import ChatRequest

    labels = ["pos", "neg"]

    def scripted(accuracy: float, seed: int) -> FunctionModel:
        def answer(request: ChatRequest) -> dict[str, str]:
            i = int(re.search(r"case (\d+)", str(request.messages[-1]["content"])).group(1))  # type: ignore[union-attr]
            right = random.Random(seed * 100_003 + i).random() < accuracy
            return {"label": labels[i % 2] if right else labels[(i + 1) % 2]}

        return FunctionModel(answer, name=f"function:acc{accuracy}")

    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(routed_config(second), encoding="utf-8")
    ws = Workspace(ws.path)
    for name, accuracy, seed, price in (("good", 0.9, 4, 4.0), ("twin", 0.9, 4, 1.0), ("mid", 0.8, 3, 1.0)):
        config = EndpointConfig(model=f"fake:{name}", price_input_per_1m=price, price_output_per_1m=price, cache=False)
        ws.registry.register(name, scripted(accuracy, seed), config)
    agents = Agents(ws)
    agents.create(parse_spec({"name": "sentiment", "kind": "classify", "labels": labels, "endpoint": "pool"}))
    agents.close()
    datasets = EvalDatasets(ws.path)
    cases = [Case(id=str(i), input=f"case {i}: some review text", expected=labels[i % 2]) for i in range(300)]
    datasets.create("reviews", cases, source="test", dev_fraction=0.3, seed=7)
    datasets.close()
    await evaluate(ws, "sentiment", "reviews", candidates=["good/zero-shot", f"{second}/zero-shot"], apply=False)
    now = time.time()
    ws.store.record_usage(UsageRecord(ts=now - 5 * 86400, endpoint="good", model="m", cost_usd=900))
    ws.store.record_usage(UsageRecord(ts=now - 5 * 86400, endpoint=second, model="m", cost_usd=100))
    return ws


def test_routing_moves_traffic_to_the_equivalent_endpoint_behind_and_the_ledger_says_why(
    tmp_path: Path, serve: Any
) -> None:
    import asyncio

    import openai

    ws = asyncio.run(evaluated_workspace(tmp_path, "twin"))
    rec = ws.eval_store.latest_run("sentiment")
    # what the evaluator found (twin is the best on ties, being cheaper), not a scripted record
    assert [t["equivalent"] for t in rec["equivalence"].values()] == [True]
    before = len(ws.store.usage())
    server = serve(ws)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    for i in range(5):
        client.chat.completions.create(model="pool", messages=[{"role": "user", "content": f"case {i}: fine"}])
    run = asyncio.run(_run_agent(ws))
    assert run in ("pos", "neg")
    routed = ws.store.usage()[before:]
    assert len(routed) == 6 and {r.endpoint for r in routed} == {"twin"}
    assert {r.requested_endpoint for r in routed} == {"pool"}
    notes = [r.extra["route"] for r in routed]
    assert {n["chose"] for n in notes} == {"twin"}
    assert "twin-deal is" in notes[0]["reason"] and "behind schedule" in notes[0]["reason"]
    assert rec["run_id"] in notes[0]["reason"]
    import httpx

    seen = httpx.get(server.url + "/api/usage", params={"records": "true", "endpoint": "twin"}, timeout=30).json()
    over_http = [r for r in seen["records"] if r["requested_endpoint"] == "pool"]
    assert len(over_http) == 6 and all(r["extra"]["route"]["chose"] == "twin" for r in over_http)  # 5 calls + the agent


async def _run_agent(ws: Any) -> Any:
    from brickyard.agents.runner import Agents

    agents = Agents(ws)
    try:
        return (await agents.run("sentiment", "case 7: fine")).output
    finally:
        agents.close()


def test_routing_leaves_traffic_when_the_evaluator_found_a_difference(tmp_path: Path) -> None:
    import asyncio

    from brickyard.models._types import ChatRequest

    ws = asyncio.run(evaluated_workspace(tmp_path, "mid"))
    rec = ws.eval_store.latest_run("sentiment")
    assert rec["equivalence"]["mid/zero-shot"]["equivalent"] is False
    before = len(ws.store.usage())

    async def calls() -> None:
        try:
            for i in range(5):
                await ws.registry.get("pool").complete(ChatRequest.from_prompt(f"case {i}: fine"))
        finally:
            await ws.aclose()

    asyncio.run(calls())
    routed = ws.store.usage()[before:]
    assert len(routed) == 5 and {r.endpoint for r in routed} == {"good"}  # mid's deal is far behind, yet no move
    assert {r.extra["route"]["chose"] for r in routed} == {"good"}
    assert "did not find mid equivalent to good" in routed[0].extra["route"]["reason"]


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"candidates": "nonsense", "equivalence": []},
        {"candidates": [{"id": "a/zero-shot"}], "equivalence": {"c/zero-shot": "yes"}},
        {
            "candidates": [{"id": "a/zero-shot", "endpoint": "a"}, {"id": "c/zero-shot", "endpoint": "c"}],
            "equivalence": {"c/zero-shot": {"best": "a/zero-shot", "equivalent": "true"}},
        },  # a string is not True
    ],
)
def test_a_malformed_evaluation_record_never_moves_traffic_nor_fails_the_call(
    store: SQLiteStore, record: dict[str, Any]
) -> None:
    spend(store, "2026-01-05T00:00:00", 900, endpoint="a")
    decision = chooser(store, Clock(ts("2026-01-11T00:00:00")), record).decision()
    assert decision.chose == "a" and "did not find c equivalent" in decision.reason


@pytest.mark.parametrize(
    ("endpoint", "key", "problem"),
    [
        ({"route": {"candidates": ["a", "nope"], "agent": "s"}}, "endpoints.pool.route.candidates", "`nope`"),
        ({"route": {"candidates": ["a"], "agent": "s"}}, "endpoints.pool.route.candidates", "at least 2"),
        ({"route": {"candidates": ["a", "c"], "agent": "s"}, "model": "fake:x"}, "endpoints.pool", "exactly one of"),
        ({"route": {"candidates": ["a", "c"], "agent": "s", "by": "price"}}, "endpoints.pool.route.by", "commitments"),
        ({"route": {"candidates": ["a", "c"]}}, "endpoints.pool.route.agent", "Field required"),
        ({"route": {"candidates": ["a", "c"], "agent": "s", "refresh_s": 0}}, "endpoints.pool.route.refresh_s", "0"),
    ],
    ids=["unknown-candidate", "one-candidate", "route-and-model", "unknown-by", "no-agent", "zero-refresh"],
)
def test_bad_routes_name_the_key(endpoint: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_settings({"endpoints": {**ENDPOINTS, "pool": endpoint}}, "b.toml")
    assert caught.value.key == key and problem in str(caught.value) and caught.value.fix


def test_a_route_cannot_be_a_commitments_endpoint() -> None:
    pool = {"route": {"candidates": ["a", "c"], "agent": "s"}}
    with pytest.raises(ConfigError, match="sends its calls to other endpoints") as caught:
        parse_settings(
            {"endpoints": {**ENDPOINTS, "pool": pool}, "commitments": [commitment(provider=None, endpoints=["pool"])]},
            "b.toml",
        )
    assert caught.value.key == "commitments[0].endpoints"


async def test_streams_and_embeddings_carry_the_route_decision_to_the_ledger(tmp_path: Path) -> None:
    """One call seam: the decision is on every kind of call's usage record."""
    from brickyard import FakeModel, Workspace
    from brickyard.models._types import ChatRequest

    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(
        '[endpoints.a]\nmodel = "fake:a"\n[endpoints.c]\nmodel = "fake:c"\n'
        '[endpoints.pool]\nroute = { candidates = ["a", "c"], agent = "nobody" }\n',
        encoding="utf-8",
    )
    ws = Workspace(ws.path)
    ws.registry.register("a", FakeModel(["streamed answer"], name="fake:a"))
    try:
        pool = ws.registry.get("pool")
        pieces = [p async for p in pool.stream(ChatRequest.from_prompt("hi"))]
        await pool.embed(["x", "y"])
        await pool.complete(ChatRequest.from_prompt("hi"))
    finally:
        await ws.aclose()
    assert "".join(pieces) == "streamed answer"
    records = Workspace(ws.path).store.usage()
    assert [r.extra["kind"] for r in records] == ["stream", "embed", "chat"]
    assert {(r.endpoint, r.requested_endpoint, r.extra["route"]["chose"]) for r in records} == {("a", "pool", "a")}
    assert "no evaluation of agent nobody" in records[0].extra["route"]["reason"]


async def test_a_failing_chosen_candidate_falls_back_to_the_first(tmp_path: Path) -> None:
    """c is behind and chosen, but its upstream answers 5xx: the default candidate answers, both attempts are
    on the ledger with the decision; a 400-type error is not retried elsewhere."""
    import time

    from brickyard import FakeModel, FunctionModel, InvalidRequestError, ServerError, Workspace
    from brickyard.config import EndpointConfig
    from brickyard.models._types import ChatRequest

    start, end = around_today()
    deals = "".join(
        f'[[commitments]]\nname = "{e}-deal"\nendpoints = ["{e}"]\namount_usd = 3000\nstart = {start}\nend = {end}\n'
        for e in ("a", "c")
    )
    ws = Workspace.init(tmp_path / "ws")
    ws.config_path.write_text(
        '[endpoints.a]\nmodel = "fake:a"\n[endpoints.c]\nmodel = "fake:c"\n'
        '[endpoints.pool]\nroute = { candidates = ["a", "c"], agent = "sentiment" }\n' + deals,
        encoding="utf-8",
    )
    ws = Workspace(ws.path)
    ws.eval_store.save_run("run-1", "sentiment", "reviews", 1, evaluation(equivalent=True))
    ws.store.record_usage(UsageRecord(ts=time.time() - 5 * 86400, endpoint="a", model="m", cost_usd=900))
    errors: list[Exception] = [ServerError("upstream 503", endpoint="c", status=503)]

    def broken(request: ChatRequest) -> str:
        raise errors[0]

    ws.registry.register("a", FakeModel(["from a"], name="fake:a"))
    ws.registry.register("c", FunctionModel(broken, name="function:broken"), EndpointConfig(model="x:c", max_retries=0))
    try:
        pool = ws.registry.get("pool")
        assert (await pool.complete(ChatRequest.from_prompt("hi"))).text == "from a"
        errors[0] = InvalidRequestError("the request is bad")
        with pytest.raises(InvalidRequestError):
            await pool.complete(ChatRequest.from_prompt("hi again"))
    finally:
        await ws.aclose()
    records = Workspace(ws.path).store.usage()[1:]
    assert [(r.endpoint, r.status) for r in records] == [("c", "error"), ("a", "ok"), ("c", "error")]
    assert {(r.requested_endpoint, r.extra["route"]["chose"]) for r in records} == {("pool", "c")}


def test_names_in_the_table_are_text_not_markup() -> None:
    from rich.console import Console

    from brickyard.commitments_cli import alerts, commitments_table

    c = CommitmentConfig.model_validate(commitment(name="[red]deal[/red]"))

    class Empty:
        def summarize(self, *args: Any, **kwargs: Any) -> list[Any]:
            return []

    bd = burn_down(c, ["[b]a[/b]"], Empty(), ts("2026-01-11T00:00:00"))  # type: ignore[arg-type]
    console = Console(record=True, width=250)
    console.print(commitments_table([bd], bd.now))
    for line in alerts([bd]):
        console.print(line)
    text = console.export_text()
    assert "[red]deal[/red]" in text and "[b]a[/b]" in text and "[red]deal[/red]: will be under-used" in text
