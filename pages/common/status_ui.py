"""Statuses on screen: badges, the legend and the table column, all from
runs_store.domain.statuses."""

from __future__ import annotations

from html import escape

import streamlit as st

from runs_store.domain.statuses import STATUSES, RunStatus, status


def status_help(run_status: RunStatus) -> str:
    return run_status.meaning + (f" {run_status.hint}" if run_status.hint else "")


def status_badge(name: str) -> None:
    found = status(name)
    st.badge(found.label, color=found.badge, help=status_help(found))


def status_column(label: str = "Status"):
    """A read-only coloured-label column; the cell values are one-item lists of labels."""
    return st.column_config.MultiselectColumn(
        label,
        options=[s.label for s in STATUSES],
        color=[s.color for s in STATUSES],
        help="Hover the legend below the table for what each status means.",
    )


def _legend_chip(run_status: RunStatus) -> str:
    return (
        f'<span title="{escape(status_help(run_status))}" style="display:inline-block;'
        f"margin:0 6px 6px 0;padding:1px 9px;border-radius:10px;font-size:0.8rem;"
        f"color:{run_status.color};background:{run_status.color}1f;"
        f'border:1px solid {run_status.color}66;cursor:help">{escape(run_status.label)}</span>'
    )


def status_legend() -> None:
    """Every status in its own colour; hovering one shows its meaning and whom to contact.

    Built only from the constants in runs_store.domain.statuses (escaped), never from record data.
    """
    st.html("<div>" + "".join(_legend_chip(s) for s in STATUSES) + "</div>")
