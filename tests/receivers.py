"""Real receivers for the alert transports: an SMTP server (aiosmtpd) and an HTTP server (the
standard library's), each on 127.0.0.1 and a free port, recording what they receive.

Nothing is mocked: a transport under test speaks real SMTP (STARTTLS, implicit TLS, AUTH) and real
HTTP to them. A test tells a receiver how to answer next (an SMTP error for the next N messages; a
sequence of HTTP statuses, bodies, redirects or a held answer) and waits for what arrives on a
condition, never on a sleep.

tests/conftest.py names this module in `pytest_plugins`, so every test can ask for its fixtures:
http_receiver, http_factory, smtp_receiver, smtp_factory and tls_ca.

`tls_ca` is a CA made for the session with `cryptography`, and a server certificate it signed
for 127.0.0.1 and localhost; point SSL_CERT_FILE at `tls_ca.ca_file` to have a client trust it.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

WAIT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------ a test CA


@dataclass(frozen=True)
class TlsCA:
    """A CA and a server certificate it signed, as PEM files; `server_context()` serves it."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_tls_ca(directory: Path, names: tuple[str, ...] = ("localhost",)) -> TlsCA:
    """A fresh CA (EC P-256, fast to make) and a server certificate for 127.0.0.1 and `names`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("Runs Explorer test CA"))
        .issuer_name(name("Runs Explorer test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    alt_names += [x509.DNSName(n) for n in names]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(names[0] if names else "127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_file = directory / "ca.pem"
    cert_file = directory / "server.pem"
    key_file = directory / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    cert_file.write_bytes(cert.public_bytes(pem))
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return TlsCA(ca_file, cert_file, key_file)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory) -> TlsCA:
    return make_tls_ca(tmp_path_factory.mktemp("test-ca"))


# ------------------------------------------------------------------ recording with a condition


class _Recorder:
    """Items appended by a server thread; a test waits on a condition until enough arrived."""

    def __init__(self) -> None:
        self._items: list = []
        self._changed = threading.Condition()

    def add(self, item) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def items(self) -> list:
        with self._changed:
            return list(self._items)

    def wait_for(self, count: int, timeout: float) -> list:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, timeout):
                raise AssertionError(
                    f"expected {count} received within {timeout} s, got {len(self._items)}"
                )
            return list(self._items)


# ------------------------------------------------------------------ SMTP


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server took it: the envelope, the parsed message, the session."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage
    authenticated_as: str | None
    tls: bool

    def part(self, content_type: str) -> str:
        """The text of the first part of this type ("text/plain", "text/html")."""
        for part in self.message.walk():
            if part.get_content_type() == content_type:
                return part.get_content().replace("\r\n", "\n")
        raise AssertionError(f"no {content_type} part in {self.message.get_content_type()}")


class _MailHandler:
    def __init__(self, receiver: SmtpReceiver):
        self._receiver = receiver

    async def handle_MAIL(self, server, session, envelope, address: str, options) -> str:
        # AUTH is required here rather than by aiosmtpd's auth_required, which warns when it
        # is not also told to require TLS (a test of AUTH alone needs no TLS).
        if self._receiver.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self._receiver._take_refusal()
        if refusal:
            return refusal
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if session.authenticated else None
        self._receiver.received.add(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                message=parsed,
                authenticated_as=login,
                tls=self._receiver.tls == "smtps" or session.ssl is not None,
            )
        )
        return "250 Message accepted for delivery"


def _authenticator(credentials: tuple[str, str] | None) -> Callable:
    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            credentials is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == credentials
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


class SmtpReceiver:
    """A real SMTP server in this process. `tls` is None (plain), "starttls" (offers STARTTLS
    with the test CA's certificate) or "smtps" (implicit TLS from the first byte). With
    `credentials` it accepts AUTH LOGIN/PLAIN with exactly that login and password, and
    then requires it before MAIL."""

    def __init__(
        self,
        tls: str | None = None,
        ca: TlsCA | None = None,
        credentials: tuple[str, str] | None = None,
    ):
        if tls not in (None, "starttls", "smtps"):
            raise ValueError(f"tls is None, 'starttls' or 'smtps', not {tls!r}")
        if tls and ca is None:
            raise ValueError("a TLS receiver needs the test CA")
        self.tls = tls
        self.host = "127.0.0.1"
        self.port = free_port()
        self.received = _Recorder()
        self.credentials = credentials
        self._refusals: list[str] = []
        self._lock = threading.Lock()
        server_context = ca.server_context() if ca else None
        self._controller = Controller(
            _MailHandler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=server_context if tls == "smtps" else None,
            server_hostname="localhost",
            tls_context=server_context if tls == "starttls" else None,
            authenticator=_authenticator(credentials),
            auth_require_tls=False,
        )

    @property
    def url(self) -> str:
        """The channel's `smtp` setting that reaches this server."""
        scheme = "smtps" if self.tls == "smtps" else "smtp"
        return f"{scheme}://{self.host}:{self.port}"

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def refuse_next(self, count: int, reply: str = "451 4.3.0 Try again later") -> None:
        """Answer DATA of the next `count` messages with `reply` ("550 5.7.1 Rejected")."""
        with self._lock:
            self._refusals.extend([reply] * count)

    def _take_refusal(self) -> str | None:
        with self._lock:
            return self._refusals.pop(0) if self._refusals else None

    @property
    def messages(self) -> list[ReceivedMail]:
        return self.received.items()

    def wait_for(self, count: int = 1, timeout: float = WAIT_SECONDS) -> list[ReceivedMail]:
        return self.received.wait_for(count, timeout)


@pytest.fixture
def smtp_factory(tls_ca) -> Iterator[Callable[..., SmtpReceiver]]:
    """Starts SMTP receivers: `smtp_factory(tls="starttls", credentials=("u", "p"))`."""
    started: list[SmtpReceiver] = []

    def start(tls: str | None = None, credentials: tuple[str, str] | None = None) -> SmtpReceiver:
        receiver = SmtpReceiver(tls=tls, ca=tls_ca if tls else None, credentials=credentials)
        started.append(receiver.start())
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


@pytest.fixture
def smtp_receiver(smtp_factory) -> SmtpReceiver:
    """A plain SMTP server without TLS or AUTH."""
    return smtp_factory()


# ------------------------------------------------------------------ HTTP


@dataclass(frozen=True)
class Reply:
    """How the HTTP receiver answers one request. `hold` seconds pass before it answers (to
    outlast a client's timeout); a closed receiver stops holding at once."""

    status: int = 200
    body: bytes | str = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    hold: float = 0.0

    def body_bytes(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


SLACK_OK = Reply(200, b"ok", (("Content-Type", "text/html"),))
SLACK_NO_SERVICE = Reply(404, b"no_service", (("Content-Type", "text/html"),))
SLACK_INVALID_PAYLOAD = Reply(400, b"invalid_payload", (("Content-Type", "text/html"),))


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)


class _RequestHandler(BaseHTTPRequestHandler):
    server: _ReceiverServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self._record_and_answer()

    def do_GET(self) -> None:
        self._record_and_answer()

    def do_PUT(self) -> None:
        self._record_and_answer()

    def _record_and_answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver = self.server.receiver
        receiver.received.add(
            ReceivedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
        )
        reply = receiver._next_reply()
        if reply.hold and receiver._closing.wait(reply.hold):
            self.close_connection = True
            return
        self._answer(reply)

    def _answer(self, reply: Reply) -> None:
        payload = reply.body_bytes()
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer

    def log_message(self, format, *args) -> None:
        pass


class _ReceiverServer(ThreadingHTTPServer):
    daemon_threads = True
    receiver: HttpReceiver


class HttpReceiver:
    """A real HTTP server in a thread. Each request takes the next queued `Reply` (`answer()`),
    then `default` (200 "ok", as a Slack incoming webhook answers)."""

    def __init__(self, default: Reply = SLACK_OK):
        self.default = default
        self.received = _Recorder()
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = _ReceiverServer(("127.0.0.1", 0), _RequestHandler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(WAIT_SECONDS)

    def answer(self, *replies: Reply | int) -> None:
        """Queue the answers to the next requests: `answer(500, 500, 200)`,
        `answer(Reply(404, "no_service"))`, `answer(Reply(hold=5))`."""
        with self._lock:
            self._replies.extend(
                r if isinstance(r, Reply) else Reply(r, b"ok" if r < 400 else b"error")
                for r in replies
            )

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.pop(0) if self._replies else self.default

    @property
    def requests(self) -> list[ReceivedRequest]:
        return self.received.items()

    def wait_for(self, count: int = 1, timeout: float = WAIT_SECONDS) -> list[ReceivedRequest]:
        return self.received.wait_for(count, timeout)


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def http_factory() -> Iterator[Callable[..., HttpReceiver]]:
    """Starts more HTTP receivers (one to redirect to, say): `http_factory(default=Reply(204))`."""
    started: list[HttpReceiver] = []

    def start(default: Reply = SLACK_OK) -> HttpReceiver:
        receiver = HttpReceiver(default).start()
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()


__all__ = [
    "SLACK_INVALID_PAYLOAD",
    "SLACK_NO_SERVICE",
    "SLACK_OK",
    "HttpReceiver",
    "ReceivedMail",
    "ReceivedRequest",
    "Reply",
    "SmtpReceiver",
    "TlsCA",
    "free_port",
    "http_factory",
    "http_receiver",
    "make_tls_ca",
    "smtp_factory",
    "smtp_receiver",
    "tls_ca",
]
