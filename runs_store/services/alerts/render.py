"""How a `Message` looks on each channel: Slack blocks, the webhook's JSON body, an email in plain
text and HTML. Pure functions, no I/O, so each rendering is tested on its own and the transports
only move bytes.

Record text is hostile: a flow name or an error message can hold `<!channel>`, a Slack link
`<http://evil|click>` or an HTML tag. Slack text has &, < and > escaped and is sent `verbatim`
(no automatic links or mentions); HTML escapes every value; a header value loses its line breaks.
"""

from __future__ import annotations

import email.policy
import html
import json
import math
import re
from collections.abc import Iterable
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from runs_store.services.alerts.channels import EmailChannel, Message, Section

LINK_TEXT = "Open the runs"
SLACK_TEXT_LIMIT = 3000  # a section's text
SLACK_HEADER_LIMIT = 150  # a header's plain text
SLACK_FIELDS_PER_SECTION = 10
SLACK_BLOCK_LIMIT = 50
SECTION_ROWS_IN_SLACK = 10

# ------------------------------------------------------------------ Slack


def slack_escape(text: str) -> str:
    """Record text as Slack shows it literally: the three characters its markup uses escaped."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_link(url: str, text: str) -> str:
    """A mrkdwn link whose text is escaped and whose URL cannot close the link early."""
    safe_url = slack_escape(url).replace("|", "%7C")
    return f"<{safe_url}|{slack_escape(text)}>"


def _mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": _clip(text, SLACK_TEXT_LIMIT), "verbatim": True}


def _plain(text: str, limit: int) -> dict:
    return {"type": "plain_text", "text": _clip(slack_escape(text), limit), "emoji": False}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(message: Message) -> dict:
    """The incoming webhook's JSON: `text` for notifications, `blocks` for the message itself."""
    blocks: list[dict] = [{"type": "header", "text": _plain(message.title, SLACK_HEADER_LIMIT)}]
    blocks += _slack_facts(message.facts)
    if message.lines:
        blocks.append(
            {"type": "section", "text": _mrkdwn("\n".join(map(slack_escape, message.lines)))}
        )
    for section in message.sections:
        blocks.append({"type": "section", "text": _mrkdwn(slack_section(section))})
    if message.link:
        blocks.append(_slack_button(message.link))
    return {
        "text": slack_escape(message.title),
        "blocks": blocks[:SLACK_BLOCK_LIMIT],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def _slack_facts(facts: tuple[tuple[str, str], ...]) -> list[dict]:
    fields = [_mrkdwn(f"*{slack_escape(label)}*\n{slack_escape(value)}") for label, value in facts]
    return [
        {"type": "section", "fields": fields[start : start + SLACK_FIELDS_PER_SECTION]}
        for start in range(0, len(fields), SLACK_FIELDS_PER_SECTION)
    ]


def _slack_button(link: str) -> dict:
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": LINK_TEXT},
                "url": link,
                "action_id": "open_runs",
            }
        ],
    }


def slack_section(section: Section) -> str:
    """A digest table as compact mrkdwn: the heading, the column names, a line per row whose
    first cell links to its runs."""
    lines = [f"*{slack_escape(section.heading)}*"]
    if not section.rows:
        return "\n".join([*lines, "_none_"])
    lines.append("_" + " · ".join(map(slack_escape, section.columns)) + "_")
    for index, row in enumerate(section.rows[:SECTION_ROWS_IN_SLACK]):
        link = _row_link(section, index)
        first = slack_link(link, row[0]) if link else slack_escape(row[0])
        lines.append("• " + " · ".join([first, *map(slack_escape, row[1:])]))
    hidden = len(section.rows) - SECTION_ROWS_IN_SLACK
    if hidden > 0:
        lines.append(f"_and {hidden} more_")
    return "\n".join(lines)


def _row_link(section: Section, index: int) -> str | None:
    return section.links[index] if index < len(section.links) else None


# ------------------------------------------------------------------ webhook


def webhook_document(message: Message, sent_at: datetime) -> dict:
    """The webhook's JSON body as a document: every field of the message, `facts` as an object
    (label -> value, in order), `sent_at` in ISO 8601 UTC."""
    return {
        "kind": message.kind,
        "title": message.title,
        "lines": list(message.lines),
        "facts": dict(message.facts),
        "link": message.link,
        "key": message.key,
        "sections": [
            {
                "heading": section.heading,
                "columns": list(section.columns),
                "rows": [list(row) for row in section.rows],
                "links": [_row_link(section, i) for i in range(len(section.rows))],
            }
            for section in message.sections
        ],
        "data": _json_safe(message.data),
        "sent_at": sent_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def webhook_body(message: Message, sent_at: datetime) -> bytes:
    """The exact bytes sent and signed: compact UTF-8 JSON."""
    document = webhook_document(message, sent_at)
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _json_safe(value):
    """The raw numbers as JSON can carry them: dates as ISO text, NaN as null, numpy scalars as
    numbers, anything else as its text."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "item"):  # a numpy or pandas scalar
        return _json_safe(value.item())
    return str(value)


# ------------------------------------------------------------------ email

_LINE_BREAKS = re.compile(r"[\r\n\t\v\f\x00-\x08\x0e-\x1f\x7f\u2028\u2029\x85]+")

_STYLE = {
    "body": "margin:0;padding:24px;background:#f4f5f7;font-family:Arial,Helvetica,sans-serif;"
    "color:#1f2328;font-size:14px;line-height:1.5",
    "card": "max-width:640px;margin:0 auto;background:#ffffff;border:1px solid #d8dee4;"
    "border-radius:6px;padding:24px",
    "kind": "font-size:12px;text-transform:uppercase;letter-spacing:0.05em;color:#59636e;"
    "margin:0 0 4px 0",
    "title": "font-size:20px;margin:0 0 16px 0;color:#1f2328",
    "table": "border-collapse:collapse;width:100%;margin:0 0 16px 0",
    "th": "text-align:left;padding:6px 8px;border-bottom:1px solid #d8dee4;color:#59636e;"
    "font-weight:bold;font-size:13px",
    "td": "text-align:left;padding:6px 8px;border-bottom:1px solid #eef1f4;vertical-align:top",
    "label": "padding:4px 12px 4px 0;color:#59636e;white-space:nowrap;vertical-align:top",
    "value": "padding:4px 0;font-weight:bold;vertical-align:top",
    "line": "margin:0 0 8px 0",
    "heading": "font-size:15px;margin:20px 0 8px 0;color:#1f2328",
    "button": "display:inline-block;background:#6e41e2;color:#ffffff;text-decoration:none;"
    "padding:10px 18px;border-radius:4px;font-weight:bold",
    "link": "color:#6e41e2",
    "muted": "color:#59636e;font-size:12px;margin:20px 0 0 0",
}

# Header lines up to RFC 5322's 998 characters: Python's folding at 78 can start a long subject
# on a line of its own, which readers then show with a leading space.
EMAIL_POLICY = email.policy.default.clone(max_line_length=998)
SUBJECT_LIMIT = 250

KIND_LABELS = {
    "firing": "Alert",
    "resolved": "Resolved",
    "digest": "Digest",
    "test": "Test message",
}
KIND_COLOURS = {"firing": "#cf222e", "resolved": "#1a7f37"}  # an alert red, its end green


def one_line(text: str) -> str:
    """A header value: line breaks and control characters become one space (no header can be
    injected through a title or a key)."""
    return _LINE_BREAKS.sub(" ", str(text)).strip()


def email_message(channel: EmailChannel, message: Message, now: datetime) -> EmailMessage:
    """The email: multipart/alternative with the plain text first and the HTML second."""
    mail = EmailMessage(policy=EMAIL_POLICY)
    mail["Subject"] = _clip(one_line(message.title), SUBJECT_LIMIT)
    mail["From"] = one_line(channel.sender)
    mail["To"] = ", ".join(one_line(address) for address in channel.to)
    mail["Date"] = format_datetime(now)
    mail["Message-ID"] = make_msgid(domain=_domain(channel.sender))
    mail["Auto-Submitted"] = "auto-generated"
    if message.key:
        mail["X-Runs-Key"] = one_line(message.key)
    mail.set_content(email_text(message))
    mail.add_alternative(email_html(message), subtype="html")
    return mail


def _domain(address: str) -> str:
    domain = one_line(address).rpartition("@")[2].strip("<> ")
    return domain if re.fullmatch(r"[A-Za-z0-9.-]+", domain) else "runs-explorer.invalid"


def email_text(message: Message) -> str:
    """The plain-text part: title, facts, lines, tables, the link."""
    out = [one_line(message.title), ""]
    width = max((len(label) for label, _ in message.facts), default=0)
    out += [f"{label + ':':<{width + 1}} {value}" for label, value in message.facts]
    if message.facts:
        out.append("")
    out += list(message.lines)
    for section in message.sections:
        out += ["", section.heading, *text_table(section)]
    if message.link:
        out += ["", f"{LINK_TEXT}: {message.link}"]
    return "\n".join(out).rstrip() + "\n"


def text_table(section: Section) -> list[str]:
    """A section as aligned plain-text columns, each row's link on the line below it."""
    if not section.rows:
        return ["  (none)"]
    rows = [tuple(section.columns), *section.rows]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(section.columns))]
    out = []
    for index, row in enumerate(rows):
        out.append("  " + "  ".join(f"{cell!s:<{w}}" for cell, w in zip(row, widths, strict=False)))
        link = _row_link(section, index - 1) if index else None
        if link:
            out.append(f"    {link}")
    return [line.rstrip() for line in out]


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def email_html(message: Message) -> str:
    """The HTML part: inline CSS only, no remote images, every value escaped."""
    kind = KIND_LABELS.get(message.kind, message.kind)
    colour = KIND_COLOURS.get(message.kind)
    kind_style = _STYLE["kind"] + (f";color:{colour};font-weight:bold" if colour else "")
    parts = [
        f'<div style="{_STYLE["card"]}">',
        f'<p style="{kind_style}">{_e(kind)}</p>',
        f'<h1 style="{_STYLE["title"]}">{_e(one_line(message.title))}</h1>',
        _html_facts(message.facts),
        *(f'<p style="{_STYLE["line"]}">{_e(line)}</p>' for line in message.lines),
        *(_html_section(section) for section in message.sections),
        _html_button(message.link),
        f'<p style="{_STYLE["muted"]}">Sent by Runs Explorer.</p>',
        "</div>",
    ]
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<title>{_e(one_line(message.title))}</title></head>"
        f'<body style="{_STYLE["body"]}">' + "".join(parts) + "</body></html>"
    )


def _html_facts(facts: Iterable[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><td style="{_STYLE["label"]}">{_e(label)}</td>'
        f'<td style="{_STYLE["value"]}">{_e(value)}</td></tr>'
        for label, value in facts
    )
    return f'<table role="presentation" style="{_STYLE["table"]}">{rows}</table>' if rows else ""


def _html_section(section: Section) -> str:
    heading = f'<h2 style="{_STYLE["heading"]}">{_e(section.heading)}</h2>'
    if not section.rows:
        return heading + f'<p style="{_STYLE["line"]}">None.</p>'
    head = "".join(f'<th style="{_STYLE["th"]}">{_e(name)}</th>' for name in section.columns)
    body = "".join(
        "<tr>" + _html_cells(row, _row_link(section, index)) + "</tr>"
        for index, row in enumerate(section.rows)
    )
    return (
        heading + f'<table style="{_STYLE["table"]}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _html_cells(row: tuple[str, ...], link: str | None) -> str:
    cells = []
    for index, cell in enumerate(row):
        text = _e(cell)
        if index == 0 and link:
            text = f'<a href="{_e(link)}" style="{_STYLE["link"]}">{text}</a>'
        cells.append(f'<td style="{_STYLE["td"]}">{text}</td>')
    return "".join(cells)


def _html_button(link: str | None) -> str:
    if not link:
        return ""
    return (
        f'<p style="margin:20px 0 0 0"><a href="{_e(link)}" style="{_STYLE["button"]}">'
        f"{_e(LINK_TEXT)}</a></p>"
    )
