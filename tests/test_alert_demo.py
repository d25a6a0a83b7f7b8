"""docs/alerts.md's "Try it on the sample", as a test: docs/alerts.example.toml on the bundled
sample (loaded moved to now, as `sample --bundled` and the app's first start load it) tells a
Slack-style webhook and an email once, sends nothing more while the spike lasts, and one Resolved
message each once the rule's threshold is raised as the docs say."""

from __future__ import annotations

import html
from pathlib import Path

from conftest import ROOT, now_utc
from runs_store.ingest.sample_loader import load_bundled_sample
from runs_store.services.alerts.check import run_check
from runs_store.services.alerts.outbox import transport_sender
from runs_store.services.alerts.rules import load_rules
from runs_store.store.backend import open_location
from runs_store.store.location import DuckDBLocation

EXAMPLE = ROOT / "docs" / "alerts.example.toml"


def example_rules(tmp_path: Path, smtp_url: str, above: str = "0.2"):
    text = EXAMPLE.read_text(encoding="utf-8").replace("smtp://127.0.0.1:8025", smtp_url)
    path = tmp_path / "alerts.toml"
    path.write_text(text.replace("above = 0.2 ", f"above = {above} "), encoding="utf-8")
    return load_rules(path)


def test_the_example_rules_tell_the_sample_spike_once_then_resolve(
    tmp_path, http_receiver, smtp_receiver, monkeypatch
):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", http_receiver.url + "/slack")
    db = tmp_path / "runs.duckdb"
    load_bundled_sample(str(db), now=now_utc())
    store = DuckDBLocation(db)

    def check(rules):
        return run_check(lambda: open_location(store), rules, now_utc(), transport_sender())

    first = check(example_rules(tmp_path, smtp_receiver.url))
    assert first.exit_code == 0
    assert [line.split(":")[0] for line in first.plan.changes] == [
        "Shopify orders failing · New Shopify order to Airtable"
    ]
    (slack,) = http_receiver.wait_for(1)
    (mail,) = smtp_receiver.wait_for(1)
    title = "Shopify orders failing · New Shopify order to Airtable: failure rate 24.7% (22 of 89"
    assert html.unescape(slack.json()["text"]).startswith(title)
    assert mail.message["Subject"].startswith(title)

    assert check(example_rules(tmp_path, smtp_receiver.url)).delivered == []
    resolved = check(example_rules(tmp_path, smtp_receiver.url, above="0.3"))
    assert [d.delivery.kind for d in resolved.delivered] == ["resolved", "resolved"]
    assert html.unescape(http_receiver.wait_for(2)[1].json()["text"]).startswith("Resolved: ")
    assert smtp_receiver.wait_for(2)[1].message["Subject"].startswith("Resolved: ")
    # the numbers that cleared it, against the threshold now (the raised one), as the title says
    resolved_mail = smtp_receiver.wait_for(2)[1].part("text/plain")
    assert "<= 30%" in resolved_mail and "Threshold:    30%" in resolved_mail
    assert http_receiver.wait_for(2)[1].json()["blocks"][1]["fields"][5]["text"].endswith("30%")
    assert check(example_rules(tmp_path, smtp_receiver.url, above="0.3")).delivered == []
    assert len(http_receiver.requests) == 2 and len(smtp_receiver.messages) == 2
