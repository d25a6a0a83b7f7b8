"""Alerts page (/alerts): what is firing now, the rules and their state per flow, the last
firings and deliveries with their outcome, and a test message per channel.

The rules and channels are the RUNS_ALERTS file's (runs_store/services/alerts/rules.py). Every
state here is judged on the store as the page opens (`alerts_status`); "since" and the firings
and deliveries come from what `python -m runs_store alerts check` recorded. A channel is shown as
where it goes (transport.describe): never a URL's token, an HMAC key or a password.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from pages.common.data import check_settings, page_store, store_opener, user_timezone
from pages.common.entry import draw_inside_app
from pages.common.text import code, plain
from runs_store.domain.errors import StoreError
from runs_store.domain.formatting import banner_time, long_duration
from runs_store.queries.view_state import AGENT_KEYS, DRILL_KEYS, FILTER_KEYS, RunsView
from runs_store.services.alerts.evaluate import FIRING, NOT_ENOUGH_RUNS, OK
from runs_store.services.alerts.rules import RulesError, RulesFile
from runs_store.services.alerts.status import (
    AlertsStatus,
    ChannelStatus,
    Delivery,
    FlowState,
    RuleStatus,
    alerts_status,
    configured_rules,
    send_test,
)

draw_inside_app()  # before this page draws anything: see pages/common/entry.py

RUNS_PAGE = "pages/runs.py"
TESTED = "alerts_tested"  # {channel: the test message's Delivery}, shown after the rerun
TEST_ASKED = "alerts_test_asked"  # the channel whose button was clicked, sent on the next run
STATE_ICONS = {
    FIRING: ":red[:material/notifications_active:]",
    OK: ":green[:material/check_circle:]",
    NOT_ENOUGH_RUNS: ":gray[:material/hourglass_empty:]",
}
DELIVERY_SHOWN = {"sent": "sent", "pending": "pending", "failed_config": "configuration error"}
EXAMPLE = """[channels.ops]
type = "slack"
url = "env:SLACK_WEBHOOK_URL"      # the URL stays in the environment

[channels.mail]
type = "email"
smtp = "smtp://mail.example.com:587"
from = "runs@example.com"
to = ["ops@example.com"]

[[rules]]
name = "Invoices failing"
kind = "failure_rate"              # failed_runs, quota_exceeded, new_error, slow, no_runs
window = "1h"
above = 0.2
min_runs = 10
flows = ["Invoice reconciliation"]
channels = ["ops", "mail"]"""


# ---------------------------------------------------------------- small helpers


def when(moment: datetime | None, tz) -> str:
    """ "Dec 7, 2026, 3:14 AM (12 min ago)"; "–" for never."""
    if moment is None:
        return "–"
    minutes = int((datetime.now(UTC).replace(tzinfo=None) - moment).total_seconds() // 60)
    ago = f"{long_duration(minutes * 60_000)} ago" if minutes >= 1 else "just now"
    return f"{banner_time(moment, tz)} ({ago})"


def runs_link_params(view: RunsView) -> dict[str, list[str]]:
    """The Runs page's URL state for a drill-down: every toolbar filter spelled out (so none of
    this session's earlier Runs filters stays on) and the view's drill-downs."""
    filters = RunsView.widgets_as_query({key: view.widget_value(key) for key in FILTER_KEYS})
    return {**filters, **view.to_query(DRILL_KEYS + AGENT_KEYS)}


def runs_href(view: RunsView) -> str:
    """A link to the Runs page (the app's default page, at its root) showing `view`."""
    query = view.to_query()
    return "./" + (f"?{urlencode(query, doseq=True)}" if query else "")


def delivery_outcome(delivery: Delivery, tz) -> str:
    shown = DELIVERY_SHOWN.get(delivery.state, delivery.state)
    if delivery.state == "pending" and delivery.next_attempt_at:
        return f"{shown}, next attempt {banner_time(delivery.next_attempt_at, tz)}"
    return shown


def flow_label(flow: str, detail: str) -> str:
    return f"{flow} · {detail}" if detail else flow


# ---------------------------------------------------------------- firing now


def show_summary(status: AlertsStatus, tz) -> None:
    flows = [flow for rule in status.rules for flow in rule.flows]
    firing = sum(1 for flow in flows if flow.state == FIRING)
    waiting = [d for d in status.deliveries if d.state == "pending"]
    broken = [d for d in status.deliveries if d.state == "failed_config"]
    columns = st.columns(4)
    columns[0].metric("Firing", firing, help="Rule and flow pairs firing now")
    columns[1].metric("OK", sum(1 for flow in flows if flow.state == OK))
    columns[2].metric("Not enough runs", sum(1 for flow in flows if flow.state == NOT_ENOUGH_RUNS))
    columns[3].metric(
        "Deliveries pending · failed",
        f"{len(waiting)} · {len(broken)}",
        help="Of the last deliveries: kept for the next check · configuration errors",
    )


def show_firing_now(status: AlertsStatus, tz) -> None:
    st.subheader("Firing now", anchor=False)
    firing = [(rule, flow) for rule in status.rules for flow in rule.flows if flow.state == FIRING]
    if not firing:
        st.success("Nothing is firing.", icon=":material/check_circle:")
        return
    for rule, flow in firing:
        show_firing_flow(rule, flow, tz)


def show_firing_flow(rule: RuleStatus, flow: FlowState, tz) -> None:
    with st.container(border=True):
        text, link = st.columns([4, 1], vertical_alignment="center")
        text.markdown(
            f"{STATE_ICONS[FIRING]} **{plain(rule.rule.name)}** · "
            f"{plain(flow_label(flow.flow, flow.detail))}  \n{plain(flow.summary)}"
        )
        since = f"since {when(flow.since, tz)}" if flow.since else "not recorded by a check yet"
        text.caption(f"{since} · tells " + ", ".join(plain(name) for name in rule.channels))
        link.page_link(
            RUNS_PAGE,
            label="Open the runs",
            icon=":material/list_alt:",
            query_params=runs_link_params(flow.view),
        )


# ---------------------------------------------------------------- the rules


def rule_label(rule: RuleStatus) -> str:
    counts = {state: sum(1 for f in rule.flows if f.state == state) for state in STATE_ICONS}
    parts = [f"{count} {state}" for state, count in counts.items() if count]
    icon = STATE_ICONS.get(rule.state, STATE_ICONS[NOT_ENOUGH_RUNS])
    return f"{icon} **{plain(rule.rule.name)}** · " + (", ".join(parts) or "no flows to judge")


def flow_rows(rule: RuleStatus, tz) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "State": flow.state,
                "Flow": flow_label(flow.flow, flow.detail),
                "Measured": flow.measured,
                "Threshold": flow.threshold,
                "Runs": flow.runs,
                "Runs page": runs_href(flow.view),
                "Since": when(flow.since, tz),
                "What": flow.summary,
            }
            for flow in rule.flows
        ]
    )


def show_rules(status: AlertsStatus, tz) -> None:
    st.subheader("Rules", anchor=False)
    for rule in status.rules:
        with st.expander(rule_label(rule)):
            st.caption(
                f"{plain(rule.description)} · tells "
                + ", ".join(plain(name) for name in rule.channels)
            )
            if rule.flows:
                st.dataframe(
                    flow_rows(rule, tz),
                    hide_index=True,
                    width="stretch",
                    column_config={
                        "Runs page": st.column_config.LinkColumn(display_text="Open the runs"),
                    },
                )
            else:
                st.caption("No flow to judge: the store has no runs of the flows it names.")


# ---------------------------------------------------------------- firings and deliveries


def firing_rows(status: AlertsStatus, tz) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Opened": banner_time(firing.opened_at, tz),
                "State": "resolved" if firing.resolved_at else "firing",
                "Rule": firing.rule,
                "Flow": flow_label(firing.flow, firing.detail),
                "Measured": firing.measured,
                "Threshold": firing.threshold,
                "Runs page": runs_href(firing.view),
                "Resolved": banner_time(firing.resolved_at, tz) if firing.resolved_at else "",
                "Deliveries": "; ".join(
                    f"{d.kind} to {d.channel}: {delivery_outcome(d, tz)}" for d in firing.deliveries
                ),
            }
            for firing in status.firings
        ]
    )


def delivery_rows(status: AlertsStatus, tz) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Queued": banner_time(delivery.created_at, tz),
                "Channel": delivery.channel,
                "Kind": delivery.kind,
                "Outcome": delivery_outcome(delivery, tz),
                "Detail": delivery.outcome or "",
                "Attempts": delivery.attempts,
                "Message": delivery.title,
            }
            for delivery in status.deliveries
        ]
    )


def show_history(status: AlertsStatus, tz) -> None:
    st.subheader("Last firings", anchor=False)
    if status.firings:
        st.dataframe(
            firing_rows(status, tz),
            hide_index=True,
            width="stretch",
            column_config={"Runs page": st.column_config.LinkColumn(display_text="Open the runs")},
        )
    else:
        st.caption("None yet: a rule fires when `alerts check` finds it crossing its threshold.")
    st.subheader("Last deliveries", anchor=False)
    if status.deliveries:
        st.dataframe(delivery_rows(status, tz), hide_index=True, width="stretch")
    else:
        st.caption("No message has been sent yet.")


# ---------------------------------------------------------------- channels


def show_channels(store, status: AlertsStatus, rules: RulesFile) -> None:
    st.subheader("Channels", anchor=False)
    for channel in status.channels:
        show_channel(store, channel, rules)


def show_channel(store, channel: ChannelStatus, rules: RulesFile) -> None:
    with st.container(border=True):
        text, button = st.columns([3, 1], vertical_alignment="center")
        text.markdown(f"**{plain(channel.name)}** · {plain(channel.description)}")
        last = f"last outcome: {plain(channel.last_outcome)}" if channel.last_outcome else "unused"
        text.caption(f"{channel.pending} pending · {last}")
        if button.button("Send a test message", key=f"test_{channel.name}", icon=":material/send:"):
            st.session_state[TEST_ASKED] = channel.name
            st.rerun()  # sent before the page opens the store again: see send_asked_test
        show_test_result(channel.name)


def send_asked_test(rules: RulesFile) -> None:
    """Sends the test message a button asked for, with the store opened only for each outbox
    step (a slow channel must not keep the CLI out of the store)."""
    name = st.session_state.pop(TEST_ASKED, None)
    if name is None:
        return
    with st.spinner(f"Sending a test message to {name}…"):
        delivery = send_test(store_opener(), name, rules)
    st.session_state.setdefault(TESTED, {})[name] = delivery


def show_test_result(name: str) -> None:
    delivery = st.session_state.get(TESTED, {}).get(name)
    if delivery is None:
        return
    detail = plain(delivery.outcome or "")
    if delivery.state == "sent":
        st.success(f"Test message sent to {plain(name)}: {detail}", icon=":material/check_circle:")
    elif delivery.state == "pending":
        st.warning(
            f"Test message to {plain(name)} not sent yet: {detail}. It is kept: the next "
            "`alerts check` tries again.",
            icon=":material/schedule:",
        )
    else:
        st.error(
            f"Test message to {plain(name)}: configuration error: {detail}", icon=":material/error:"
        )


# ---------------------------------------------------------------- no rules yet


def show_how_to(configured: bool) -> None:
    with st.expander("Set up alerts", expanded=not configured, icon=":material/add_alert:"):
        st.markdown(
            "Write the rules and the channels they tell in a TOML file and point `RUNS_ALERTS` "
            "at it, then run the checks from cron or keep them running. Secrets stay in "
            "environment variables (`env:NAME`): the file only names them. Every kind and "
            "setting: `docs/alerts.md`; a ready example that fires on the bundled sample: "
            "`docs/alerts.example.toml`."
        )
        st.code(EXAMPLE, language="toml")
        st.code(
            "export RUNS_ALERTS=alerts.toml SLACK_WEBHOOK_URL=https://hooks.slack.com/services/...\n"
            "python -m runs_store alerts check --dry-run    # what would be sent\n"
            "python -m runs_store alerts check              # once (cron: every minute)\n"
            "python -m runs_store alerts watch --every 60   # or keep checking\n"
            "python -m runs_store digest --period day --channel mail",
            language="bash",
        )
        st.caption("Restart the app after setting `RUNS_ALERTS`: it reads its environment once.")


# ---------------------------------------------------------------- the page


def read_rules() -> RulesFile | None:
    """The rules file, or None when none is set; a file with mistakes stops the page with one
    error line per mistake."""
    try:
        return configured_rules()
    except RulesError as error:
        lines = list(error.lines)
    except StoreError as error:
        lines = str(error).splitlines()
    for line in lines:
        st.error(plain(line), icon=":material/error:")
    show_how_to(configured=True)
    st.stop()
    raise AssertionError("st.stop() returned")  # never: it ends the script run


def main() -> None:
    st.title("Alerts", anchor=False)
    check_settings()
    rules = read_rules()
    if rules is None:
        st.info(
            "No rules file is set (`RUNS_ALERTS`): nothing is watched yet.",
            icon=":material/notifications_off:",
        )
        show_how_to(configured=False)
        return
    tz = user_timezone()
    send_asked_test(rules)
    with page_store() as store:
        status = store.call(alerts_status, rules)
        last = (
            f"last `alerts check` {when(status.last_check_at, tz)}"
            if status.last_check_at
            else "**no `alerts check` has run yet**: nothing is sent until one does"
        )
        st.caption(f"Rules from {code(rules.path)}, judged as this page opened · {last}")
        for line in status.warnings:
            st.warning(plain(line), icon=":material/warning:")
        show_summary(status, tz)
        show_firing_now(status, tz)
        show_rules(status, tz)
        show_history(status, tz)
        show_channels(store, status, rules)
    show_how_to(configured=True)


main()
