"""The command line: `python -m runs_store ingest | pull | rejects | export | sample | prune |
alerts | digest | agents`.

Exit codes: 0 done; 1 loaded with some records rejected (alerts, digest: a message not delivered
yet, or refused); 2 a setting, a path, a rules file or the database could not be used (the
message says which and why; no traceback). Every setting is checked before a command starts, so
a bad one is named even when that command would not have read it.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

from runs_store import settings
from runs_store.domain.errors import StoreError
from runs_store.domain.run_fields import RecordRejected, parse_time
from runs_store.domain.statuses import STATUS_NAMES, parse_status
from runs_store.ingest.pipeline import ingest_paths
from runs_store.queries.filters import RunFilter
from runs_store.services.export import (
    FORMATS,
    refuse_store_as_output,
    replaced_on_success,
    write_export,
)
from runs_store.store.backend import open_location
from runs_store.store.location import (
    ChdbLocation,
    DuckDBLocation,
    StoreLocation,
    current_location,
)
from runs_store.store.rejects import list_rejects, reject_location


class ProgressBar:
    """A one-line progress bar on stderr, drawn only where it is a terminal (or when forced)."""

    def __init__(self, mode: str):
        self.enabled = mode == "always" or (mode == "auto" and sys.stderr.isatty())

    def __call__(self, name: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        sys.stderr.write(
            f"\r{Path(name).name[:40]:40} [{bar:30}] {share:4.0%} "
            f"{done / 1e6:,.1f}/{total / 1e6:,.1f} MB"
        )
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _location(args) -> StoreLocation:
    """The store --db (else RUNS_DB) names: a DuckDB file, chdb:PATH or clickhouse://..."""
    return current_location(args.db)


def command_ingest(args) -> int:
    location = _location(args)
    summary = ingest_paths(
        str(location), args.paths, progress=ProgressBar(args.progress), cluster=args.cluster
    )
    print(f"Ingested {summary.line()}.")
    with open_location(location, cluster=args.cluster) as con:
        _prune_after(con)
    if summary.rejected:
        print(f"See the rejected records with: python -m runs_store rejects --db {location}")
    return summary.exit_code


class PullProgressLine:
    """Runs listed and fetched, the rate, and an ETA where the walk knows its share, on one line
    of stderr where it is a terminal."""

    def __init__(self, mode: str):
        self.enabled = mode == "always" or (mode == "auto" and sys.stderr.isatty())
        self.started = time.monotonic()

    def __call__(self, listed: int, fetched: int, requests: int, share: float | None) -> None:
        if not self.enabled:
            return
        seconds = max(time.monotonic() - self.started, 1e-6)
        eta = f" ETA {seconds * (1 - share) / share:5,.0f} s" if share and share < 1 else ""
        sys.stderr.write(
            f"\r{listed:>10,} runs listed {fetched:>10,} fetched "
            f"{fetched / seconds:8,.0f} runs/s {requests:>10,} requests{eta}"
        )
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _pull_source(args, con):
    """The engine named on the command line, or in RUNS_SOURCES by --source, ready to pull."""
    from runs_store.ingest.engine.pull import stored_versions
    from runs_store.ingest.engine.sources_file import SourceConfig, find_source, open_source

    if args.source:
        config = find_source(args.source)
    elif args.api:
        config = SourceConfig("--api", "api", args.api, (), "RUNS_API_TOKEN")
    else:
        config = SourceConfig("--postgres", "postgres", args.postgres, (), "RUNS_PG_PASSWORD")
    return open_source(config, stored_versions(con)), config


def command_pull(args) -> int:
    from runs_store.ingest.engine.pull import pull
    from runs_store.ingest.engine.source import PullError, PullRefused

    since = _date(args.since, "since")
    progress = PullProgressLine(args.progress)
    with open_location(_location(args), cluster=args.cluster) as con:
        while True:
            try:
                source, config = _pull_source(args, con)
                projects = args.project or list(config.projects)
                with closing(source):
                    summary = pull(con, source, projects, since or config.since, progress)
            except PullError as error:  # --watch goes on after a fault, not after a refusal
                progress.done()
                print(f"error: {error}", file=sys.stderr)
                if not args.watch or isinstance(error, PullRefused):
                    return error.exit_code
            else:
                progress.done()
                print(f"Pulled {summary.line()}.")
                for note in summary.notes[:20]:
                    print(f"note: {note}")
                if not args.watch:
                    return summary.exit_code
            time.sleep(args.watch)


def _prune_after(con) -> None:
    """Retention after a load (RUNS_RETENTION_DAYS, RUNS_ROLLUP_DAYS): said only when it pruned."""
    from runs_store.store.rollups import prune

    pruned = prune(con)
    if pruned.runs or pruned.rollup_rows:
        print(f"Retention: {pruned.line()}.")


def command_prune(args) -> int:
    from runs_store.store.rollups import prune

    with open_location(_existing_database(args)) as con:
        pruned = prune(con)
    print(f"Retention: {pruned.line()}.")
    return 0


def _existing_database(args) -> StoreLocation:
    """The store a reading command reads: a DuckDB file or a chdb store must exist (a mistyped
    --db creates nothing); a server's database is made by the store when missing."""
    location = _location(args)
    if isinstance(location, DuckDBLocation) and not location.path.is_file():
        raise StoreError(
            f"no database at {location}: check --db or RUNS_DB (reading commands never create one)"
        )
    if isinstance(location, ChdbLocation) and not location.path.is_dir():
        raise StoreError(
            f"no ClickHouse store at {location}: check --db or RUNS_DB (reading commands never "
            "create one)"
        )
    return location


def command_rejects(args) -> int:
    with open_location(_existing_database(args), read_only=True) as con:
        rejects = list_rejects(con)
    for reject in rejects:
        print(f"{reject['source']}:{reject_location(reject)}: {reject['reason']}")
    print(f"{len(rejects):,} rejected record" + ("" if len(rejects) == 1 else "s"), file=sys.stderr)
    return 0


def _status_names(values: list[str]) -> tuple[str, ...]:
    names = []
    for value in values:
        found = parse_status(value)
        if found is None:
            raise StoreError(
                f"unknown status {value!r}; use one of {', '.join(STATUS_NAMES)} or their labels"
            )
        names.append(found.name)
    return tuple(names)


def _date(value: str | None, name: str) -> datetime | None:
    try:
        return parse_time(value, name)
    except RecordRejected as error:
        raise StoreError(
            f"--{name}: {error}; use a date like 2026-11-01 or 2026-11-01T09:00Z"
        ) from None


def export_filter(args) -> RunFilter:
    return RunFilter(
        flows=tuple(args.flow or ()),
        statuses=_status_names(args.status or []),
        since=_date(args.since, "since"),
        until=_date(args.until, "until"),
        include_archived=args.archived,
    )


def command_export(args) -> int:
    run_filter = export_filter(args)
    if args.format == "parquet" and not args.output:
        raise StoreError("parquet export needs --output FILE")
    location = _existing_database(args)
    if args.output and isinstance(location, DuckDBLocation):
        refuse_store_as_output(args.output, location.path)
    with open_location(location, read_only=True) as con:
        if args.output:
            with replaced_on_success(args.output) as out:
                count = write_export(con, out, args.format, run_filter)
        else:
            count = write_export(con, sys.stdout.buffer, args.format, run_filter)
    print(f"Exported {count:,} runs.", file=sys.stderr)
    return 0


def command_agents(args) -> int:
    """One row per tool the agents called: tool, type, calls, failed, unfinished, failure_rate,
    p50_ms, p95_ms, runs (services/agents.py)."""
    from runs_store.services.agents import write_tools

    run_filter = RunFilter(
        since=_date(args.since, "since"),
        until=_date(args.until, "until"),
        include_archived=args.archived,
    )
    with open_location(_existing_database(args), read_only=True) as con:
        count = write_tools(con, run_filter, sys.stdout.buffer, args.format)
    print(f"{count:,} tools.", file=sys.stderr)
    return 0


def command_sample(args) -> int:
    from runs_store.ingest.sample_loader import load_bundled_sample, load_generated_sample

    end = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    if args.bundled:
        summary = load_bundled_sample(str(_location(args)), now=end)
        print(f"Sample: {summary.line()}.")
        return 0
    summary = load_generated_sample(
        str(_location(args)),
        runs=args.runs,
        days=args.days,
        seed=args.seed,
        end=end,
        progress=ProgressBar(args.progress),
        cluster=args.cluster,
    )
    print(f"Sample: {summary.line()}.")
    return 0


def _alert_rules(args):
    """The rules file --rules (else RUNS_ALERTS) names, checked whole (RulesError: exit 2)."""
    from runs_store.services.alerts.rules import load_rules

    path = args.rules or settings.current().alerts
    if not path:
        raise StoreError("no rules file: pass --rules FILE or set RUNS_ALERTS (see docs/alerts.md)")
    return load_rules(path)


def _utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def command_alerts(args) -> int:
    from runs_store.services.alerts.check import run_check
    from runs_store.services.alerts.outbox import transport_sender

    rules = _alert_rules(args)
    location = _existing_database(args)
    if args.dry_run:
        return _alerts_dry_run(location, rules)
    send = transport_sender()
    try:
        while True:
            result = run_check(lambda: open_location(location), rules, _utc_now(), send)
            _print_check(result)
            if args.action == "check":
                return result.exit_code
            time.sleep(args.every)
    except KeyboardInterrupt:
        print("stopped: every check so far is recorded", file=sys.stderr)
        return 0


def _print_check(result) -> None:
    for line in result.plan.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{result.plan.now:%Y-%m-%d %H:%M:%S} UTC")
    for line in result.plan.changes:
        print(f"  {line}")
    for delivered in result.delivered:
        print(f"  {delivered.line}")
    print(f"  {result.line}.")
    sys.stdout.flush()


def _alerts_dry_run(location: StoreLocation, rules) -> int:
    from runs_store.services.alerts.check import dry_run_lines, plan_check
    from runs_store.store import alert_state

    now = _utc_now()
    with open_location(location, read_only=True) as con:
        plan = plan_check(con, rules, now)
        due = alert_state.due_deliveries(con, now) if alert_state.has_tables(con) else []
    for line in plan.warnings:
        print(f"warning: {line}", file=sys.stderr)
    print(f"{now:%Y-%m-%d %H:%M:%S} UTC (dry run: nothing is sent or recorded)")
    for line in plan.changes:
        print(f"  {line}")
    lines = dry_run_lines(plan, due)
    for line in lines or ["nothing would be sent"]:
        print(f"  {line}")
    return 0


def command_digest(args) -> int:
    from runs_store.services.alerts.outbox import transport_sender
    from runs_store.services.alerts.sending import send_digest

    rules = _alert_rules(args)
    if args.channel not in rules.channels:
        known = ", ".join(sorted(rules.channels)) or "none"
        raise StoreError(f"no channel {args.channel!r} in {rules.path} (its channels: {known})")
    location = _existing_database(args)
    outcome = send_digest(
        lambda: open_location(location),
        rules,
        args.channel,
        args.period,
        _utc_now(),
        None if args.dry_run else transport_sender(),
    )
    for line in outcome.lines:
        print(line)
    return outcome.exit_code


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 1 <= value < 10**7:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runs_store", description="Load, inspect and export workflow runs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    db_help = (
        f"the store (default: $RUNS_DB or {settings.default('RUNS_DB')}): a DuckDB file, "
        "chdb:PATH or clickhouse://USER@HOST:PORT/DATABASE"
    )
    cluster_help = (
        "on a ClickHouse server, make the store's tables Replicated and Distributed over this "
        "cluster (see docs/clickhouse.md)"
    )

    ingest = commands.add_parser("ingest", help="load run files or directories")
    ingest.add_argument("paths", nargs="+", metavar="PATH")
    ingest.add_argument("--db", help=db_help)
    ingest.add_argument("--cluster", metavar="NAME", help=cluster_help)
    ingest.add_argument("--progress", choices=("auto", "always", "never"), default="auto")
    ingest.set_defaults(run=command_ingest)

    pull = commands.add_parser(
        "pull",
        help="pull runs from a live engine: its API (token in RUNS_API_TOKEN) or its Postgres",
    )
    engine = pull.add_mutually_exclusive_group(required=True)
    engine.add_argument(
        "--api",
        metavar="BASE_URL",
        help="the engine's API root, e.g. https://cloud.activepieces.com/api",
    )
    engine.add_argument("--source", metavar="NAME", help="an engine named in the RUNS_SOURCES file")
    engine.add_argument(
        "--postgres",
        metavar="DSN",
        help="postgresql://USER@HOST:PORT/DB (password: RUNS_PG_PASSWORD)",
    )
    pull.add_argument("--project", action="append", metavar="ID", help="project id (repeatable)")
    pull.add_argument("--since", help="a first pull takes runs created at or after this date (UTC)")
    pull.add_argument(
        "--watch",
        type=_positive_seconds,
        metavar="SECONDS",
        help="keep pulling, this many seconds apart",
    )
    pull.add_argument("--db", help=db_help)
    pull.add_argument("--cluster", metavar="NAME", help=cluster_help)
    pull.add_argument("--progress", choices=("auto", "always", "never"), default="auto")
    pull.set_defaults(run=command_pull)

    rejects = commands.add_parser("rejects", help="list rejected records: file, line, reason")
    rejects.add_argument("--db", help=db_help)
    rejects.set_defaults(run=command_rejects)

    export = commands.add_parser("export", help="write runs as csv, jsonl or parquet")
    export.add_argument("--db", help=db_help)
    export.add_argument("--format", choices=FORMATS, default="csv")
    export.add_argument("--output", help="file to write (default: standard output)")
    export.add_argument("--flow", action="append", help="flow name (repeatable)")
    export.add_argument("--status", action="append", help="status name or label (repeatable)")
    export.add_argument("--since", help="runs started at or after this date/time (UTC)")
    export.add_argument("--until", help="runs started before this date/time (UTC)")
    export.add_argument("--archived", action="store_true", help="include archived runs")
    export.set_defaults(run=command_export)

    agents = commands.add_parser(
        "agents", help="AI agents' tool calls, one row per tool: calls, failures, durations"
    )
    agents.add_argument("--db", help=db_help)
    agents.add_argument("--format", choices=("json", "csv"), default="json")
    agents.add_argument("--since", required=True, help="runs started at or after this date (UTC)")
    agents.add_argument("--until", help="runs started before this date/time (UTC)")
    agents.add_argument("--archived", action="store_true", help="include archived runs")
    agents.set_defaults(run=command_agents)

    prune = commands.add_parser(
        "prune",
        help="delete raw runs older than RUNS_RETENTION_DAYS (their hours rolled up first) and "
        "rollups older than RUNS_ROLLUP_DAYS",
    )
    prune.add_argument("--db", help=db_help)
    prune.set_defaults(run=command_prune)

    sample = commands.add_parser("sample", help="generate realistic synthetic runs")
    sample.add_argument(
        "--bundled",
        action="store_true",
        help="load the bundled sample (sample_data/) moved so its newest run is now, as the app "
        "does on an empty store",
    )
    sample.add_argument("--runs", type=int, default=10_000)
    sample.add_argument("--days", type=float, default=30)
    sample.add_argument("--seed", type=int, default=7)
    sample.add_argument("--db", help=db_help)
    sample.add_argument("--cluster", metavar="NAME", help=cluster_help)
    sample.add_argument("--progress", choices=("auto", "always", "never"), default="auto")
    sample.set_defaults(run=command_sample)

    rules_help = "the alert rules file (default: $RUNS_ALERTS; see docs/alerts.md)"
    alerts = commands.add_parser(
        "alerts", help="judge the alert rules on the store and deliver their messages"
    )
    alert_actions = alerts.add_subparsers(dest="action", required=True)
    check = alert_actions.add_parser(
        "check", help="judge every rule once and deliver what is due (for cron)"
    )
    watch = alert_actions.add_parser("watch", help="check again and again until Ctrl-C")
    watch.add_argument(
        "--every", type=_positive_seconds, default=60.0, metavar="SECONDS", help="default 60"
    )
    for action in (check, watch):
        action.add_argument("--rules", metavar="FILE", help=rules_help)
        action.add_argument("--db", help=db_help)
        action.add_argument(
            "--dry-run", action="store_true", help="print what would be sent; change nothing"
        )
        action.set_defaults(run=command_alerts)

    digest = commands.add_parser("digest", help="send a digest of a day or a week to a channel")
    digest.add_argument("--period", choices=("day", "week"), default="day")
    digest.add_argument("--channel", required=True, metavar="NAME", help="a channel of the rules")
    digest.add_argument("--rules", metavar="FILE", help=rules_help)
    digest.add_argument("--db", help=db_help)
    digest.add_argument("--dry-run", action="store_true", help="print the digest; send nothing")
    digest.set_defaults(run=command_digest)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings.current()  # every setting checked before any work
        return args.run(args)
    except StoreError as error:
        for line in str(error).splitlines():  # a SettingError has one line per bad setting
            print(f"error: {line}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. --output in a folder that does not exist, or a full disk
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "pull":
            print(
                "interrupted: the pages pulled so far are kept; pull again to go on",
                file=sys.stderr,
            )
        else:
            print("interrupted: the file being loaded was rolled back", file=sys.stderr)
        return 130
