"""The alert rules file: the issue's shape is read into rules and channels, and a file with
mistakes is refused whole with one line per mistake naming the file, the rule (or channel) and
the key; the CLI prints them and exits 2."""

from __future__ import annotations

from datetime import timedelta

import pytest

from factories import run_cli
from runs_store.services.alerts.channels import EmailChannel, SecretRef, SlackChannel
from runs_store.services.alerts.rules import RulesError, flow_warnings, load_rules

ISSUE_EXAMPLE = """
[channels.ops]
type = "slack"                 # slack | webhook | email
url = "env:SLACK_WEBHOOK_URL"  # a literal URL or env:NAME
[channels.hook]
type = "webhook"
url = "https://example.com/runs-alerts"
secret = "env:ALERTS_HMAC_SECRET"   # optional: signs the body (HMAC-SHA256 header)
[channels.mail]
type = "email"
smtp = "smtp://mail.example.com:587"  # smtps:// for TLS; user and password from env
from = "runs@example.com"
to = ["ops@example.com"]

[[rules]]
name = "Invoices failing"
kind = "failure_rate"  # failure_rate | failed_runs | quota_exceeded | new_error | slow | no_runs
window = "1h"                  # 15m, 1h, 24h, 7d ...
above = 0.2                    # a rate (failure_rate), a count, or milliseconds (slow: p95)
min_runs = 10                  # failure_rate: not judged on fewer runs
flows = ["Invoice reconciliation"]   # optional; all flows when absent
channels = ["ops", "mail"]
"""


def write(tmp_path, text: str):
    path = tmp_path / "alerts.toml"
    path.write_text(text, encoding="utf-8")
    return path


def mistakes(tmp_path, text: str) -> list[str]:
    with pytest.raises(RulesError) as raised:
        load_rules(write(tmp_path, text))
    return [
        line.replace(str(tmp_path / "alerts.toml"), "alerts.toml") for line in raised.value.lines
    ]


def test_the_issues_example_reads_as_written(tmp_path):
    rules = load_rules(write(tmp_path, ISSUE_EXAMPLE))
    assert rules.channels["ops"] == SlackChannel("ops", SecretRef("SLACK_WEBHOOK_URL"))
    assert rules.channels["hook"].secret == SecretRef("ALERTS_HMAC_SECRET")
    assert rules.channels["mail"] == EmailChannel(
        "mail", "smtp://mail.example.com:587", "runs@example.com", ("ops@example.com",)
    )
    (rule,) = rules.rules
    assert (rule.name, rule.kind, rule.window, rule.above, rule.min_runs) == (
        "Invoices failing",
        "failure_rate",
        timedelta(hours=1),
        0.2,
        10,
    )
    assert rule.flows == ("Invoice reconciliation",)
    assert rule.channels == ("ops", "mail")


def test_defaults_min_runs_ten_and_a_count_of_zero(tmp_path):
    rules = load_rules(
        write(
            tmp_path,
            """
[channels.ops]
type = "slack"
url = "https://hooks.slack.com/services/T/B/x"
[[rules]]
name = "Any new error"
kind = "new_error"
window = "15m"
channels = ["ops"]
[[rules]]
name = "Slow"
kind = "slow"
window = "7d"
above = 60000
channels = ["ops"]
[[rules]]
name = "Quiet"
kind = "no_runs"
window = "2w"
channels = ["ops"]
""",
        )
    )
    new, slow, quiet = rules.rules
    assert (new.above, new.min_runs, new.window) == (0.0, 0, timedelta(minutes=15))
    assert (slow.above, slow.min_runs) == (60000.0, 10)
    assert (quiet.above, quiet.window) == (None, timedelta(weeks=2))


def test_every_mistake_is_one_line_naming_file_rule_and_key(tmp_path):
    found = mistakes(
        tmp_path,
        """
timezone = "Mars/Olympus"
color = "red"
[channels.ops]
type = "slack"
url = "ftp://example.com"
[channels.mail]
type = "email"
smtp = "smtp://mail.example.com:587"
from = "runs@example.com"
to = ["ops@example.com", "nobody"]
password = "hunter2"
[channels.pager]
type = "pager"
[[rules]]
name = "Invoices failing"
kind = "failure_rate"
window = "1h"
above = 1.5
channels = ["ops", "sms"]
[[rules]]
name = "Invoices failing"
kind = "failed_runs"
window = "90 minutes"
above = -1
min_runs = 5
channels = ["ops"]
[[rules]]
kind = "explode"
window = "1h"
channels = []
threshold = 3
[[rules]]
name = "Quiet"
kind = "no_runs"
window = "1d"
above = 0
channels = ["ops"]
[[rules]]
name = "Slow"
kind = "slow"
window = "1h"
channels = ["ops"]
""",
    )
    assert found == [
        "alerts.toml: key 'color': unknown key; the file has channels, rules, timezone",
        (
            "alerts.toml: channel 'ops': key 'url': an http(s) URL or \"env:NAME\" is needed, "
            "got 'ftp://example.com'"
        ),
        "alerts.toml: channel 'mail': key 'to': an e-mail address is needed, got 'nobody'",
        (
            "alerts.toml: channel 'mail': key 'password': only \"env:NAME\" is taken here "
            "(a secret is never written in)"
        ),
        (
            "alerts.toml: channel 'pager': key 'type': one of slack, webhook, email is needed, "
            "got 'pager'"
        ),
        "alerts.toml: rule 'Invoices failing': key 'above': a rate from 0 to 1 is needed, got 1.5",
        (
            "alerts.toml: rule 'Invoices failing': key 'channels': no channel 'sms' "
            "([channels.NAME]: mail, ops, pager)"
        ),
        (
            "alerts.toml: rule 'Invoices failing': key 'name': another rule has this name; each "
            "needs its own"
        ),
        (
            "alerts.toml: rule 'Invoices failing': key 'window': a span from 1m to 366d like 15m, "
            "1h, 24h or 7d is needed, got '90 minutes'"
        ),
        (
            "alerts.toml: rule 'Invoices failing': key 'above': a whole number of runs >= 0 is "
            "needed, got -1"
        ),
        "alerts.toml: rule 'Invoices failing': key 'min_runs': only failure_rate and slow take it",
        (
            "alerts.toml: rule #3: key 'threshold': unknown key; a rule takes name, kind, window, "
            "above, min_runs, flows, channels"
        ),
        "alerts.toml: rule #3: key 'name': a name is needed (any text)",
        (
            "alerts.toml: rule #3: key 'kind': one of failure_rate, failed_runs, quota_exceeded, "
            "new_error, slow, no_runs is needed, got 'explode'"
        ),
        "alerts.toml: rule #3: key 'channels': a list of one or more names is needed",
        (
            "alerts.toml: rule 'Quiet': key 'above': no_runs takes no threshold: it fires on no "
            "runs at all"
        ),
        (
            "alerts.toml: rule 'Slow': key 'above': a p95 duration in milliseconds > 0 is needed, "
            "missing"
        ),
        "alerts.toml: key 'timezone': an IANA zone like Europe/Paris is needed, got 'Mars/Olympus'",
    ]


def test_toml_syntax_errors_name_the_line(tmp_path):
    (line,) = mistakes(tmp_path, '[[rules]]\nname = "A"\nkind = failure_rate\n')
    assert line.startswith("alerts.toml: not valid TOML: ")
    assert "line 3" in line


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(RulesError) as raised:
        load_rules(tmp_path / "nope.toml")
    assert raised.value.lines == (
        f"{tmp_path / 'nope.toml'}: no such file (check --rules or RUNS_ALERTS)",
    )


def test_a_flow_the_store_has_no_runs_of_is_a_warning_not_an_error(tmp_path):
    rules = load_rules(write(tmp_path, ISSUE_EXAMPLE))
    assert flow_warnings(rules, ["Invoice reconciliation"]) == []
    assert flow_warnings(rules, ["Invoices"]) == [
        (
            f"{tmp_path / 'alerts.toml'}: rule 'Invoices failing': key 'flows': no runs of a flow "
            "named 'Invoice reconciliation' are in the store"
        )
    ]


def test_the_cli_prints_every_mistake_and_exits_2(tmp_path):
    path = write(tmp_path, '[[rules]]\nname = "A"\nkind = "slow"\nwindow = "1y"\n')
    done = run_cli("alerts", "check", "--rules", str(path), "--db", str(tmp_path / "x.duckdb"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        (
            f"error: {path}: rule 'A': key 'window': a span from 1m to 366d like 15m, 1h, 24h "
            "or 7d is needed, got '1y'"
        ),
        (
            f"error: {path}: rule 'A': key 'above': a p95 duration in milliseconds > 0 is needed, "
            "missing"
        ),
        f"error: {path}: rule 'A': key 'channels': missing: a list of names is needed",
    ]
    assert not (tmp_path / "x.duckdb").exists()


def test_the_cli_without_rules_says_so_and_exits_2(tmp_path):
    done = run_cli("alerts", "check", "--db", str(tmp_path / "x.duckdb"), env={"RUNS_ALERTS": ""})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: no rules file: pass --rules FILE or set RUNS_ALERTS (see docs/alerts.md)"
    )
