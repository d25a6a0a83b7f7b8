"""Markdown as Streamlit's renderer reads it, for tests of what pages send: the text a reader sees,
and the links it makes.

Backslash escapes and code spans are read first; then `[text](target)` and `<scheme:…>` make
links, and so do the addresses the renderer links by itself in plain text (GitHub's "autolink
literals": https://…, www.…, name@host.tld), however their characters were escaped, since it
finds them after the escapes are read. Text in code spans links nothing.
"""

from __future__ import annotations

import re
import string

_INERT = "\0"  # an escaped bracket: it opens or closes no link
_EXPLICIT = re.compile(r"\[[^\]\0]*\]\(\s*<?([^)\s\0>]*)|<([a-z][a-z0-9+.\-]*:[^\s<>\0]*)>", re.I)
_LITERAL = re.compile(r"(?:https?://|www\.)[-.\w]+\S*|[-.+\w]+@[-\w]+(?:\.[-\w]+)+", re.I)


# ------------------------------------------------------------------ reading markdown


def _pieces(markdown: str) -> list[tuple[str, str, str]]:
    """(kind, as read, as linked) pieces: "text" with its escapes resolved (escaped brackets
    inert for links), or a "code" span."""
    pieces, text, linked, at = [], [], [], 0
    while at < len(markdown):
        char = markdown[at]
        if char == "\\" and markdown[at + 1 : at + 2] in tuple(string.punctuation):
            escaped = markdown[at + 1]
            text.append(escaped)
            linked.append(_INERT if escaped in "[]()<>" else escaped)
            at += 2
            continue
        if char == "`":
            fence = re.match(r"`+", markdown[at:]).group()
            close = re.compile(rf"(?<!`){fence}(?!`)").search(markdown, at + len(fence))
            if close:
                pieces.append(("text", "".join(text), "".join(linked)))
                text, linked = [], []
                inside = markdown[at + len(fence) : close.start()]
                if len(inside) > 2 and inside[0] == inside[-1] == " " and inside.strip():
                    inside = inside[1:-1]
                pieces.append(("code", inside, inside))
                at = close.end()
                continue
            text.append(fence)
            linked.append(fence)
            at += len(fence)
            continue
        text.append(char)
        linked.append(char)
        at += 1
    pieces.append(("text", "".join(text), "".join(linked)))
    return pieces


def as_read(markdown: str) -> str:
    """What a reader sees of markdown text (hard line breaks as newlines)."""
    return "".join(read for _, read, _ in _pieces(markdown)).replace("  \n", "\n")


def link_targets(markdown: str) -> list[str]:
    """Every link the markdown makes: explicit ones, and addresses in its text (not in code)."""
    found = []
    for kind, _, linked in _pieces(markdown):
        if kind == "text":
            found += [a or b for a, b in _EXPLICIT.findall(linked)]
            found += _LITERAL.findall(_EXPLICIT.sub(_INERT, linked))  # not again inside a link
    return found
