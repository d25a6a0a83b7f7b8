"""Pictures of alert messages as the local receivers got them (docs/alerts_receivers.py keeps them
in `alerts-received/`): the email's HTML part as a mail client shows it, and a Slack message's
blocks laid out the way Slack lays them out (header, facts in two columns, text, buttons), each
rendered by headless Chromium to a PNG. The README's alert-email.png and alert-slack.png.

    python docs/render_received.py alerts-received/001-mail.html alert-email.png
    python docs/render_received.py alerts-received/002-http-slack.json alert-slack.png

Needs Debian's chromium (tests/setup_browser.sh installs it) and Playwright.
"""

from __future__ import annotations

import html
import json
import re
import sys
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
WIDTH = 760
SLACK_PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; padding: 24px; background: #fff; color: #1d1c1d; font: 15px/1.47 Lato, Arial,
  Helvetica, sans-serif; }}
.message {{ display: flex; gap: 10px; max-width: 700px; }}
.avatar {{ width: 36px; height: 36px; border-radius: 6px; background: #6e41e2; color: #fff;
  font-weight: bold; display: flex; align-items: center; justify-content: center; flex: none; }}
.who {{ font-weight: 900; }} .app {{ background: #e8e8e8; color: #616061; font-size: 10px;
  font-weight: bold; padding: 1px 3px; border-radius: 2px; margin: 0 4px; }}
.time {{ color: #616061; font-size: 12px; }}
.header {{ font-size: 18px; font-weight: 900; margin: 6px 0 8px; }}
.fields {{ display: grid; grid-template-columns: 1fr 1fr; gap: 8px 16px; margin: 8px 0; }}
.section {{ margin: 8px 0; white-space: pre-wrap; }}
.button {{ display: inline-block; border: 1px solid #bbb; border-radius: 4px; padding: 3px 12px;
  font-weight: bold; font-size: 13px; margin-top: 6px; }}
.note {{ color: #616061; font-size: 12px; margin-top: 20px; border-top: 1px solid #eee;
  padding-top: 8px; }}
</style></head><body><div class="message"><div class="avatar">R</div><div>
<div><span class="who">Runs Explorer</span><span class="app">APP</span>
<span class="time">{time}</span></div>
{blocks}
</div></div><div class="note">{note}</div></body></html>"""


def slack_text(text: str, kind: str) -> str:
    """Block text as Slack shows it: its &amp; &lt; &gt; read back, and for mrkdwn *bold*."""
    shown = html.escape(html.unescape(text))
    if kind == "mrkdwn":
        shown = re.sub(r"\*([^*\n]+)\*", r"<b>\1</b>", shown)
    return shown


def slack_block(block: dict) -> str:
    kind = block.get("type")
    if kind == "header":
        return f'<div class="header">{slack_text(block["text"]["text"], "plain_text")}</div>'
    if kind == "section":
        parts = []
        if block.get("text"):
            text = block["text"]
            parts.append(f'<div class="section">{slack_text(text["text"], text["type"])}</div>')
        if block.get("fields"):
            cells = "".join(
                f'<div class="section">{slack_text(f["text"], f["type"])}</div>'
                for f in block["fields"]
            )
            parts.append(f'<div class="fields">{cells}</div>')
        return "".join(parts)
    if kind == "actions":
        return "".join(
            f'<span class="button" title="{html.escape(e.get("url", ""))}">'
            f"{slack_text(e['text']['text'], 'plain_text')}</span> "
            for e in block.get("elements", ())
        )
    if kind == "divider":
        return "<hr>"
    if kind == "context":
        texts = (slack_text(e.get("text", ""), e.get("type", "")) for e in block["elements"])
        return f'<div class="time">{" ".join(texts)}</div>'
    return f"<pre>{html.escape(json.dumps(block, indent=2))}</pre>"


def slack_page(path: Path) -> str:
    document = json.loads(path.read_text(encoding="utf-8"))
    blocks = "\n".join(slack_block(block) for block in document.get("blocks", ()))
    note = (
        f"{html.escape(path.name)}: the Block Kit JSON as the Slack-style webhook received it, "
        "laid out as Slack shows it."
    )
    return SLACK_PAGE.format(time="now", blocks=blocks, note=note)


def render(source: Path, target: Path, browser=None) -> None:
    """`source` (an email's HTML part, or a Slack message's JSON) as a PNG at `target`, in the
    given Playwright browser or a headless Chromium of its own."""
    if source.suffix == ".json":
        page_file = Path(tempfile.mkdtemp()) / "slack.html"
        page_file.write_text(slack_page(source), encoding="utf-8")
    else:
        page_file = source
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            own = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--headless=new", "--disable-gpu"]
            )
            render(source, target, own)
            own.close()
        return
    page = browser.new_page(viewport={"width": WIDTH, "height": 400})
    page.goto(page_file.resolve().as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(target), full_page=True)
    page.close()
    print(f"wrote {target}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    render(Path(sys.argv[1]), Path(sys.argv[2]))
