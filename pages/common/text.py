"""Record text made safe to show through Streamlit's markdown-based elements.

Flow names, step names and error messages come from files users load; inside st.markdown,
st.error, st.caption, headings, labels and tooltips every markdown character of theirs is
escaped, so they always read as the text they are and never format, link or inject anything.

Escaping alone does not stop links: Streamlit's markdown turns web addresses and e-mail addresses
it finds in text into links after the escapes are read (GitHub-flavoured "autolink literals":
`https://…`, `www.…`, `name@host.tld`), so `http\\://evil\\.example` is still a link. Addresses
are therefore shown as inline code, the one place markdown never links; they read the same
(copying them gives the recorded characters) and plainly are not something to click.
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=])")

# Everything Streamlit's markdown could turn into a link, and more: an address from its scheme or
# "www." to the next space, and e-mail addresses. (Its own rules: https?:// or www. followed by a
# domain with a dot, and local@domain.tld; both only where a link may start.)
_ADDRESS = re.compile(
    r"(?:[a-z][a-z0-9+.\-]*://|www\.)\S*"
    r"|[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+",
    re.IGNORECASE,
)
_BACKTICKS = re.compile(r"`+")
_TRAILING = ".,:;!?\"'*_~"  # left out of an address at its end, as markdown leaves them


def _address_length(address: str) -> int:
    """How much of a matched address to show as code: its trailing punctuation, and closing
    brackets it did not open, stay outside ("see https://x.example/a)." ends after the a)."""
    end = len(address)
    while end:
        last = address[end - 1]
        if last in _TRAILING or (
            last == ")" and address.count("(", 0, end) < address.count(")", 0, end)
        ):
            end -= 1
        else:
            break
    return end


def _escaped(text: str) -> str:
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def code(text) -> str:
    """Any text as one inline code span: shown verbatim (no escapes apply there), never linked.

    The fence is one backtick longer than the longest run inside; text that starts or ends with a
    backtick is padded with a space, which markdown then drops.
    """
    text = str(text).replace("\n", " ")
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * (longest + 1)
    if (
        text.startswith("`")
        or text.endswith("`")
        or (text.startswith(" ") and text.endswith(" ") and text.strip())
    ):
        text = f" {text} "
    return f"{fence}{text}{fence}"


def plain(text) -> str:
    """Every markdown character escaped and every address as inline code; line breaks kept as
    line breaks. The reader sees exactly the recorded text, with nothing to click."""
    lines = []
    for line in str(text).split("\n"):
        parts, start = [], 0
        for found in _ADDRESS.finditer(line):
            end = found.start() + _address_length(found.group())
            if end == found.start():
                continue
            parts.append(_escaped(line[start : found.start()]))
            parts.append(code(line[found.start() : end]))
            start = end
        parts.append(_escaped(line[start:]))
        lines.append("".join(parts))
    return "  \n".join(lines)
