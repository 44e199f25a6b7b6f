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
from brickyard.store.base import UsageRecord
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


def spend(store: SQLiteStore, when: str, usd: float, endpoint: str = "a") -> None:
    store.record_usage(UsageRecord(ts=ts(when), endpoint=endpoint, model="m", cost_usd=usd))


def only(s: Settings, store: SQLiteStore, now: str) -> BurnDown:
    (bd,) = burn_downs(s, store, ts(now))
    return bd


def test_under_use_from_hand_computed_numbers(store: SQLiteStore) -> None:
    """3,000 USD over 30 days; at day 10, 650 spent (450 in the last 7 days): behind by 350, projected
    650 + 450/7 × 20 = 1,935.71, a shortfall of 1,064.29."""
    spend(store, "2025-12-31T23:59:59", 777)  # before the start
    spend(store, "2026-01-01T00:00:00", 150)  # the first second counts
    spend(store, "2026-01-02T12:00:00", 50)
    spend(store, "2026-01-06T12:00:00", 300, endpoint="b")  # covered: provider openai
    spend(store, "2026-01-09T00:00:00", 100)
    spend(store, "2026-01-10T23:59:59", 50)
    spend(store, "2026-01-05T00:00:00", 999, endpoint="c")  # anthropic: not covered
    spend(store, "2026-01-11T00:00:00", 555)  # at `now`: not yet
    bd = only(settings(commitment()), store, "2026-01-11T00:00:00")
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
