"""Local receivers for trying alerts without Slack or a mail server (docs/alerts.md, "Try it on
the sample"): a Slack-style webhook on http://127.0.0.1:8026 and an SMTP server on
127.0.0.1:8025, each printing one line per message and keeping it in `alerts-received/` (the
Slack JSON, the whole email, and the email's HTML part to open in a browser).

    python docs/alerts_receivers.py            # Ctrl-C to stop

Needs aiosmtpd (in requirements-dev.txt). Both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import email
import email.policy
import html
import itertools
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HTTP_PORT, SMTP_PORT = 8026, 8025
FOLDER = Path("alerts-received")
_numbers = itertools.count(1)


class SlackStyleHook(BaseHTTPRequestHandler):
    """Takes any POST, prints its `text` (Slack's) or `title` (a webhook's) and answers 200 ok."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        number = next(_numbers)
        (FOLDER / f"{number:03d}-http{self.path.replace('/', '-')}.json").write_bytes(body)
        try:
            document = json.loads(body)
            shown = html.unescape(document.get("text") or document.get("title") or "")
        except ValueError:
            shown = body[:200].decode(errors="replace")
        print(f"[{number:03d}] HTTP POST {self.path}: {shown}", flush=True)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format, *args) -> None:  # one line per message is printed above
        pass


class MailKeeper:
    async def handle_DATA(self, server, session, envelope) -> str:
        number = next(_numbers)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        (FOLDER / f"{number:03d}-mail.eml").write_bytes(envelope.content)
        part = message.get_body(preferencelist=("html",))
        if part is not None:
            (FOLDER / f"{number:03d}-mail.html").write_text(part.get_content(), encoding="utf-8")
        print(f"[{number:03d}] mail to {', '.join(envelope.rcpt_tos)}: {message['Subject']}")
        sys.stdout.flush()
        return "250 OK"


def main() -> None:
    from aiosmtpd.controller import Controller

    FOLDER.mkdir(exist_ok=True)
    smtp = Controller(MailKeeper(), hostname="127.0.0.1", port=SMTP_PORT)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", HTTP_PORT), SlackStyleHook)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"Slack-style webhook: http://127.0.0.1:{HTTP_PORT}/slack", flush=True)
    print(f"SMTP: smtp://127.0.0.1:{SMTP_PORT}; messages kept in {FOLDER}/", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        http.shutdown()
        smtp.stop()


if __name__ == "__main__":
    main()
