"""Every kind of rule judged on a generated store whose answers are computed here, from the records
themselves (not from the store), on DuckDB and on chdb; and each judgement's link, read back the
way the Runs page reads its URL, shows exactly the runs it counted."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from backends import BACKENDS, opened
from factories import simple_run, store_with
from runs_store.domain.signatures import error_signature
from runs_store.domain.statuses import FAILED_STATES, FINISHED_STATES
from runs_store.queries.view_state import RunsView
from runs_store.services.alerts.evaluate import FIRING, NOT_ENOUGH_RUNS, OK, evaluate
from runs_store.services.alerts.rules import parse_rules
from runs_store.services.runs_list import count_runs

NOW = datetime(2026, 12, 7, 12, 0)
FLOWS = ("Invoices", "Orders", "Reports", "Quiet flow")
ERRORS = ("Invalid token", "Rate limited by Slack", "Row 7 is missing", "Sheet not found")
STATUSES = ("SUCCEEDED",) * 6 + ("FAILED",) * 3 + ("QUOTA_EXCEEDED", "TIMEOUT", "RUNNING")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def generated_records(seed: int = 17) -> list[dict]:
    """Runs of four flows over three days before NOW (the Quiet flow's only before the last
    day), with failures, quota hits, errors first seen at known times and archived runs."""
    rng = random.Random(seed)
    records = []
    for number in range(900):
        flow = FLOWS[number % 4]
        age = timedelta(minutes=rng.uniform(0, 3 * 24 * 60))
        if flow == "Quiet flow":
            age += timedelta(days=1)
        created = NOW - age
        status = rng.choice(STATUSES)
        fields: dict = {
            "finishTime": _iso(created + timedelta(milliseconds=rng.randint(50, 90_000)))
        }
        if status in FAILED_STATES:
            # the last error is only ever made in the last hour: a new error there
            errors = ERRORS if age < timedelta(hours=1) else ERRORS[:3]
            fields["failedStep"] = {
                "name": "step_1",
                "displayName": "Call",
                "message": rng.choice(errors),
            }
        if rng.random() < 0.05:
            fields["archivedAt"] = _iso(NOW)
        records.append(simple_run(f"r{number}", _iso(created), status, flow=flow, **fields))
    return records


RULES = parse_rules(
    {
        "channels": {"ops": {"type": "slack", "url": "env:SLACK"}},
        "rules": [
            {
                "name": "rate",
                "kind": "failure_rate",
                "window": "6h",
                "above": 0.3,
                "min_runs": 10,
                "channels": ["ops"],
            },
            {
                "name": "failed",
                "kind": "failed_runs",
                "window": "1h",
                "above": 1,
                "channels": ["ops"],
            },
            {
                "name": "quota",
                "kind": "quota_exceeded",
                "window": "24h",
                "above": 4,
                "channels": ["ops"],
            },
            {"name": "new", "kind": "new_error", "window": "1h", "channels": ["ops"]},
            {
                "name": "slow",
                "kind": "slow",
                "window": "24h",
                "above": 80_000,
                "min_runs": 30,
                "channels": ["ops"],
            },
            {
                "name": "quiet",
                "kind": "no_runs",
                "window": "24h",
                "flows": ["Quiet flow", "Orders", "Never ran"],
                "channels": ["ops"],
            },
        ],
    }
)


class Oracle:
    """The answers, computed from the records as written."""

    def __init__(self, records: list[dict]):
        self.runs = [
            {
                "flow": r["flowVersion"]["displayName"],
                "status": r["status"],
                "at": datetime.fromisoformat(r["created"].replace("Z", "+00:00")).replace(
                    tzinfo=None
                ),
                "ms": round(
                    (
                        datetime.fromisoformat(r["finishTime"].replace("Z", "+00:00"))
                        - datetime.fromisoformat(r["created"].replace("Z", "+00:00"))
                    ).total_seconds()
                    * 1000
                ),
                "signature": error_signature(r["failedStep"]["message"])
                if r.get("failedStep")
                else None,
            }
            for r in records
            if not r.get("archivedAt")
        ]

    def window(self, flow: str, hours: float) -> list[dict]:
        start = NOW - timedelta(hours=hours)
        return [r for r in self.runs if r["flow"] == flow and start <= r["at"] < NOW]

    def failure_rate(self, flow: str, hours: float) -> tuple[int, int]:
        runs = [r for r in self.window(flow, hours) if r["status"] in FINISHED_STATES]
        return sum(r["status"] in FAILED_STATES for r in runs), len(runs)

    def count(self, flow: str, hours: float, statuses) -> int:
        return sum(r["status"] in statuses for r in self.window(flow, hours))

    def p95(self, flow: str, hours: float) -> tuple[float | None, int]:
        values = sorted(r["ms"] for r in self.window(flow, hours) if r["status"] in FINISHED_STATES)
        if not values:
            return None, 0
        rank = 0.95 * (len(values) - 1)
        low = int(rank)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low), len(values)

    def new_errors(self, flow: str, hours: float) -> dict[str, int]:
        start = NOW - timedelta(hours=hours)
        first: dict[str, datetime] = {}
        for r in self.runs:
            if r["flow"] == flow and r["signature"] and r["at"] < NOW:
                first[r["signature"]] = min(first.get(r["signature"], r["at"]), r["at"])
        return {
            sig: sum(r["signature"] == sig for r in self.window(flow, hours))
            for sig, at in first.items()
            if at >= start
        }


@pytest.fixture(scope="module")
def generated_store(tmp_path_factory):
    records = generated_records()
    path = store_with(tmp_path_factory.mktemp("alerts") / "runs.duckdb", records)
    return path, Oracle(records)


@pytest.fixture(scope="module")
def chdb_copies():
    return {}


@pytest.fixture(params=BACKENDS)
def judged(request, generated_store, chdb_copies):
    path, oracle = generated_store
    with opened(request.param, path, request, chdb_copies) as con:
        judgements = evaluate(con, RULES, NOW)
        yield con, {(j.rule, j.flow, j.detail): j for j in judgements}, oracle


def test_failure_rate_per_flow_judged_on_enough_runs(judged):
    _, found, oracle = judged
    for flow in FLOWS:
        failed, finished = oracle.failure_rate(flow, 6)
        j = found[("rate", flow, "")]
        assert j.runs == finished
        if finished < 10:
            assert j.state == NOT_ENOUGH_RUNS
            continue
        assert j.measured == pytest.approx(failed / finished)
        assert j.state == (FIRING if failed / finished > 0.3 else OK)
    assert found[("rate", "Quiet flow", "")].state == NOT_ENOUGH_RUNS
    assert {j.state for (rule, _, _), j in found.items() if rule == "rate"} & {OK, FIRING}


def test_failed_runs_and_quota_counts(judged):
    _, found, oracle = judged
    for flow in FLOWS:
        failed = oracle.count(flow, 1, FAILED_STATES)
        quota = oracle.count(flow, 24, {"QUOTA_EXCEEDED"})
        assert found[("failed", flow, "")].measured == failed
        assert found[("failed", flow, "")].state == (FIRING if failed > 1 else OK)
        assert found[("quota", flow, "")].measured == quota
        assert found[("quota", flow, "")].state == (FIRING if quota > 4 else OK)
    states = {found[("quota", flow, "")].state for flow in FLOWS}
    assert states == {FIRING, OK}, "the data should make some flows fire and some not"


def test_new_error_fires_per_flow_and_signature_first_seen_in_the_window(judged):
    _, found, oracle = judged
    expected = {
        (flow, sig): count for flow in FLOWS for sig, count in oracle.new_errors(flow, 1).items()
    }
    assert expected, "the data should hold a new error"
    firing = {(f, d): j.measured for (rule, f, d), j in found.items() if rule == "new" and d}
    assert firing == expected
    for flow in FLOWS:
        if not any(f == flow for f, _ in expected):
            assert found[("new", flow, "")].state == OK


def test_slow_is_the_p95_of_finished_runs_on_enough_runs(judged):
    _, found, oracle = judged
    for flow in FLOWS:
        p95, count = oracle.p95(flow, 24)
        j = found[("slow", flow, "")]
        assert j.runs == count
        if count < 30:
            assert j.state == NOT_ENOUGH_RUNS
            continue
        assert j.measured == pytest.approx(p95)
        assert j.state == (FIRING if p95 > 80_000 else OK)


def test_no_runs_fires_for_a_flow_that_ran_before_and_not_since(judged):
    _, found, _ = judged
    assert found[("quiet", "Quiet flow", "")].state == FIRING
    assert found[("quiet", "Orders", "")].state == OK
    assert found[("quiet", "Never ran", "")].state == NOT_ENOUGH_RUNS
    assert ("quiet", "Invoices", "") not in found  # the rule names its flows


def test_each_link_opens_exactly_the_runs_it_counted(judged):
    """The link's query read by the Runs page's own view state gives a filter whose days hold
    the window; narrowed to the window, it counts what the judgement counted."""
    con, found, _ = judged
    checked = 0
    for j in found.values():
        if j.state != FIRING or j.kind in ("no_runs", "slow"):
            continue
        query = parse_qs(urlsplit(j.link).query)
        assert urlsplit(j.link).path == "/"
        view, notices = RunsView.from_query(query)
        assert notices == []
        run_filter = view.run_filter(NOW, NOW.date(), UTC)
        assert run_filter.since <= j.window_start and run_filter.until >= j.window_end
        in_window = run_filter.with_(since=j.window_start, until=j.window_end)
        counted = count_runs(con, in_window)
        if j.kind == "failure_rate":
            assert counted == round(j.measured * j.runs)
        else:
            assert counted == j.measured
        checked += 1
    assert checked >= 3
