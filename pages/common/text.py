"""Record text made safe to show through Streamlit's markdown-based elements.

Flow names, step names and error messages come from files users load; inside st.markdown,
st.error, st.caption and friends every markdown character of theirs is escaped, so they always
read as the text they are and never format, link or inject anything.
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$&=])")


def plain(text) -> str:
    """Every markdown character escaped; line breaks kept as line breaks."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text)).replace("\n", "  \n")
