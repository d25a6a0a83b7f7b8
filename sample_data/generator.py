"""Synthetic flow runs in the Activepieces engine's own JSON shapes, made deterministically.

Why this exists: Runs Explorer reads run exports from the engine (`GET /v1/flow-runs/{id}`),
but real exports are private, small and never cover every case the app must handle. This
module fabricates any number of runs, the same ones for the same arguments, shaped exactly
like the engine's (see shared/notes/run-records.md): all eleven statuses, failed steps with
the error messages people really see, loops, routers, Run Agent timelines, secrets to mask,
purged logs, archived runs, subflow runs, older-engine records, a flow version that broke a
step, and quota bursts at month ends. Tests, demos and benchmarks load 1k or 10M runs offline.

Speed comes from work done once: each flow's step tree and a pool of coherent payload
"scenarios" are built up front, and each run is a few small dicts pointing at them. Those
shared objects (flowVersion, step inputs/outputs, loop outputs, agent blocks) must be treated
as read-only by consumers.
"""

from __future__ import annotations

import gzip as _gzip
import itertools
import json
import os
import random
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson

__all__ = ["generate_runs", "write_jsonl"]

_MINUTE_MS = 60_000
_HOUR_MS = 3_600_000
_DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCENARIOS_PER_FLOW = 96
_ENGINE_TIMEOUT_MS = 600_000

# Share of runs by outcome (before the flows' own failure rates).
_STUCK_RATE = 0.0003  # RUNNING for days: a worker died and nobody noticed
_QUOTA_RATE = 0.85  # within a month-end burst
_PURGED_RATE = 0.01  # finished runs whose logs were purged (steps: null)
_ARCHIVED_RATE = 0.03
_TAGGED_RATE = 0.4  # runs of a tagged flow that carry its tags
_HALTS = (
    ("CANCELED", 0.007),
    ("TIMEOUT", 0.004),
    ("INTERNAL_ERROR", 0.003),
    ("MEMORY_LIMIT_EXCEEDED", 0.0015),
    ("LOG_SIZE_EXCEEDED", 0.001),
)
_HALT_NAMES = tuple(name for name, _ in _HALTS)
_HALT_CUM = tuple(itertools.accumulate(rate for _, rate in _HALTS))

# Relative run volume by UTC hour of day and by weekday (Monday first).
_HOURLY = (
    0.22,
    0.18,
    0.16,
    0.16,
    0.2,
    0.28,
    0.45,
    0.7,
    0.95,
    1.1,
    1.15,
    1.15,
    1.1,
    1.2,
    1.25,
    1.2,
    1.05,
    0.9,
    0.75,
    0.6,
    0.5,
    0.42,
    0.34,
    0.27,
)
_WEEKDAY = (1.0, 1.0, 1.0, 1.0, 0.95, 0.38, 0.32)

# kind -> (minimum ms, spread ms); durations are skewed towards the minimum.
_STEP_TIMES = {
    "code": (5, 75),
    "api": (150, 2850),
    "ai": (900, 9000),
    "audio": (4000, 26000),
    "router": (1, 6),
    "pause": (2, 10),
    "subflow": (600, 4000),
}
_FAIL_WEIGHT = {"code": 1.0, "api": 3.0, "ai": 2.0, "audio": 2.0, "agent": 2.0, "subflow": 1.0}


# ---------------------------------------------------------------- time, ids, json

_day_prefixes: dict[int, str] = {}


def _to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    """Epoch milliseconds as the engine writes them: 2026-11-03T09:14:02.118Z."""
    day, rest = divmod(ms, _DAY_MS)
    prefix = _day_prefixes.get(day)
    if prefix is None:
        prefix = _day_prefixes[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    second, milli = divmod(rest, 1000)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    return f"{prefix}{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z"


_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ID_TABLE = bytes(ord(_ALNUM[i % 62]) for i in range(256))
_UPPER_TABLE = bytes(ord(_ALNUM[i % 36]) for i in range(256))


def _new_id(g: random.Random, size: int = 21) -> str:
    """A nanoid-like id (the engine's are 21 alphanumeric characters)."""
    return g.randbytes(size).translate(_ID_TABLE).decode("ascii")


def _upper_id(g: random.Random, size: int) -> str:
    return g.randbytes(size).translate(_UPPER_TABLE).decode("ascii")


def _hex(g: random.Random, size: int) -> str:
    return f"{g.getrandbits(4 * size):0{size}x}"


def _uuid(g: random.Random) -> str:
    h = _hex(g, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


_js = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return plain.replace("'", "").lower()


# ---------------------------------------------------------------- errors people really see
# Each error maker takes the run's random generator and returns an errorMessage string.


def _fixed(message: str) -> Callable[[random.Random], str]:
    return lambda g: message


def _response(status: int, body, **headers) -> str:
    """An HTTP failure as pieces report it: the response, JSON-encoded."""
    response = {"status": status, "body": body}
    if headers:
        response["headers"] = {key.replace("_", "-"): value for key, value in headers.items()}
    return _js({"response": response})


def _slack(error: str, status: int) -> Callable[[random.Random], str]:
    return lambda g: _response(status, {"ok": False, "error": error})


def _slack_channel_not_found(g):
    channel = "C0" + _upper_id(g, 9)
    return _response(404, {"ok": False, "error": "channel_not_found", "channel": channel})


def _slack_rate_limited(g):
    return _response(429, {"ok": False, "error": "ratelimited"}, retry_after=str(g.randint(1, 60)))


def _http_rate_limited(g):
    wait = g.randint(2, 120)
    body = {"message": f"Rate limit exceeded. Retry in {wait} seconds."}
    return _response(429, body, retry_after=str(wait))


def _http_etimedout(g):
    address = ".".join(str(g.randint(1, 254)) for _ in range(4))
    return f"Error: connect ETIMEDOUT {address}:443"


def _http_gateway_timeout(g):
    return _response(
        504,
        "<html><head><title>504 Gateway Time-out</title></head><body>"
        "<center><h1>504 Gateway Time-out</h1></center></body></html>",
    )


def _http_expired_token(g):
    return _response(
        401, {"error": "invalid_token", "error_description": "The access token expired"}
    )


def _axios_timeout(g):
    return f"AxiosError: timeout of {g.choice((10000, 30000, 60000))}ms exceeded"


def _code_no_items(g):
    return f"Error: Order #{g.randint(1001, 48999)} has no line items"


def _hubspot(status: int, category: str, message: str) -> Callable[[random.Random], str]:
    return lambda g: _response(
        status,
        {"status": "error", "message": message, "correlationId": _uuid(g), "category": category},
    )


def _sheets(code: int, status: str, message: Callable[[random.Random], str]):
    return lambda g: _js({"error": {"code": code, "message": message(g), "status": status}})


def _sheets_quota_message(g):
    return (
        "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute "
        "per user' of service 'sheets.googleapis.com' for consumer "
        f"'project_number:{g.randint(10**11, 10**12)}'."
    )


def _airtable(kind: str, message: Callable[[random.Random], str]):
    return lambda g: _js({"error": {"type": kind, "message": message(g)}})


def _airtable_bad_total(g):
    """The error of the Shopify flow's broken version (it sends the total with its currency)."""
    value = f"{g.randint(12, 2400)}.{g.randint(0, 99):02d} {g.choice(('USD', 'EUR', 'GBP'))}"
    message = f'Field "Order Total" cannot accept the provided value "{value}"'
    return _js({"error": {"type": "INVALID_VALUE_FOR_COLUMN", "message": message}})


def _quickbooks(kind: str, code: str, message: str, detail: Callable[[random.Random], str]):
    return lambda g: _js(
        {
            "Fault": {
                "type": kind,
                "Error": [{"Message": message, "Detail": detail(g), "code": code}],
            }
        }
    )


def _quickbooks_duplicate_detail(g):
    return (
        "Duplicate Document Number Error : You must specify a different number. This number "
        f"has already been used. DocNumber=INV-{g.randint(10000, 99999)}"
    )


def _quickbooks_inactive_detail(g):
    return (
        "Object Not Found : Something you're trying to use has been made inactive. Check the "
        "fields with accounts, customers, items, vendors or employees. "
        f"Vendor Id={g.randint(10, 900)}"
    )


def _stripe_missing_customer(g):
    return _js(
        {
            "error": {
                "code": "resource_missing",
                "param": "id",
                "type": "invalid_request_error",
                "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                "message": f"No such customer: 'cus_{_new_id(g, 14)}'",
            }
        }
    )


def _zendesk_invalid_requester(g):
    user = g.randint(10**11, 10**12)
    problem = f"Requester: Email is not properly formatted (user {user})"
    details = {"requester": [{"description": problem}]}
    return _response(
        422,
        {"error": "RecordInvalid", "description": "Record validation errors", "details": details},
    )


def _gmail_rate_limited(g):
    retry = _iso(g.randint(1_780_000_000_000, 1_800_000_000_000))
    return _js(
        {
            "code": 429,
            "message": f"User-rate limit exceeded.  Retry after {retry}",
            "status": "RESOURCE_EXHAUSTED",
        }
    )


def _openai_rate_limited(g):
    message = (
        f"Rate limit reached for gpt-4o-mini in organization org-{_new_id(g, 24)} on tokens "
        f"per min (TPM): Limit 200000, Used {g.randint(190000, 199999)}, Requested "
        f"{g.randint(800, 9000)}. Please try again in "
        f"{g.randint(1, 9)}.{g.randint(0, 999)}s."
    )
    return _js(
        {
            "error": {
                "message": message,
                "type": "tokens",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
    )


def _openai_context_length(g):
    message = (
        "This model's maximum context length is 128000 tokens. However, your messages "
        f"resulted in {g.randint(128001, 190000)} tokens. Please reduce the length."
    )
    return _js(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
    )


def _agent_max_steps(g):
    return f"Agent stopped: reached maxSteps ({g.choice((5, 8, 10))}) before a final answer"


def _agent_bad_structured_output(g):
    return (
        "Failed to parse structured output: expected property 'priority' of type string, "
        f"got undefined (request {_uuid(g)})"
    )


def _github_rate_limited(g):
    return _response(
        403,
        {
            "message": f"API rate limit exceeded for installation ID {g.randint(10**7, 10**8)}.",
            "documentation_url": "https://docs.github.com/rest/rate-limit",
        },
    )


def _notion_too_long(g):
    message = (
        "body failed validation: body.children[0].paragraph.rich_text[0].text.content"
        f".length should be ≤ `2000`, instead was `{g.randint(2001, 9000)}`."
    )
    return _js({"object": "error", "status": 400, "code": "validation_error", "message": message})


def _notion_not_shared(g):
    message = (
        f"Could not find database with ID: {_uuid(g)}. Make sure the relevant pages and "
        "databases are shared with your integration."
    )
    return _js({"object": "error", "status": 404, "code": "object_not_found", "message": message})


def _okta_login_taken(g):
    cause = "login: An object with this field already exists in the current organization"
    return _js(
        {
            "errorCode": "E0000001",
            "errorSummary": "Api validation failed: login",
            "errorLink": "E0000001",
            "errorId": "oae" + _new_id(g, 22),
            "errorCauses": [{"errorSummary": cause}],
        }
    )


def _shopify_rate_limited(g):
    body = {
        "errors": "Exceeded 2 calls per second for api client. Reduce request rates to "
        "resume uninterrupted service."
    }
    return _response(429, body, retry_after=f"{g.randint(1, 4)}.0")


_NOT_IN_CHANNEL = _slack("not_in_channel", 403)
_SLACK_ERRORS = (
    _NOT_IN_CHANNEL,
    _NOT_IN_CHANNEL,
    _slack_channel_not_found,
    _slack_rate_limited,
    _slack("invalid_auth", 401),
)
_HTTP_ERRORS = (
    _fixed("TypeError: Invalid URL"),
    _http_rate_limited,
    _http_rate_limited,
    _http_etimedout,
    _http_gateway_timeout,
    _http_expired_token,
    _axios_timeout,
)
_READING_EMAIL = _fixed("TypeError: Cannot read properties of undefined (reading 'email')")
_CODE_ERRORS = (
    _READING_EMAIL,
    _READING_EMAIL,
    _fixed("TypeError: Cannot read properties of null (reading 'split')"),
    _fixed('Error: "customer_id" is required'),
    _fixed("SyntaxError: Unexpected token '<', \"<!DOCTYPE \"... is not valid JSON"),
    _fixed("RangeError: Invalid time value"),
    _code_no_items,
)
_BAD_SIGNATURE = _fixed(
    "StripeSignatureVerificationError: No signatures found matching the "
    "expected signature for payload."
)
_SIGNATURE_ERRORS = _CODE_ERRORS + (_BAD_SIGNATURE,) * 3
_HUBSPOT_ERRORS = (
    _hubspot(
        401,
        "INVALID_AUTHENTICATION",
        "Authentication credentials not found. This API "
        "supports OAuth 2.0 authentication and you can find more details at "
        "https://developers.hubspot.com/docs/methods/auth/oauth-overview",
    ),
    _hubspot(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric."),
    _hubspot(429, "RATE_LIMITS", "You have reached your secondly limit."),
)
_SHEETS_ERRORS = (
    _sheets(429, "RESOURCE_EXHAUSTED", _sheets_quota_message),
    _sheets(404, "NOT_FOUND", _fixed("Requested entity was not found.")),
    _sheets(
        400, "INVALID_ARGUMENT", lambda g: f"Unable to parse range: Deals!A{g.randint(2, 9000)}:F"
    ),
)
_AIRTABLE_ERRORS = (
    _airtable("ROW_DOES_NOT_EXIST", lambda g: f"Record ID rec{_new_id(g, 14)} does not exist"),
    _airtable(
        "INVALID_MULTIPLE_CHOICE_OPTIONS",
        lambda g: (
            f'Insufficient permissions to create new select option ""SKU-{g.randint(100, 999)}""'
        ),
    ),
    _airtable("RATE_LIMIT_REACHED", _fixed("Rate limit exceeded. Please try again later")),
)
_QUICKBOOKS_ERRORS = (
    _quickbooks(
        "ValidationFault", "6140", "Duplicate Document Number Error", _quickbooks_duplicate_detail
    ),
    _quickbooks("ValidationFault", "610", "Object Not Found", _quickbooks_inactive_detail),
    _quickbooks(
        "AUTHENTICATION",
        "3200",
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        lambda g: "Token expired: AB11" + _new_id(g, 24),
    ),
)
_STRIPE_ERRORS = (
    _stripe_missing_customer,
    _fixed(
        _js(
            {
                "error": {
                    "message": "Too many requests hit the API too quickly. "
                    "We recommend an exponential backoff of your requests.",
                    "type": "rate_limit_error",
                }
            }
        )
    ),
)
_ZENDESK_ERRORS = (_zendesk_invalid_requester,)
_GMAIL_ERRORS = (
    _gmail_rate_limited,
    _fixed(
        _js(
            {
                "code": 401,
                "status": "UNAUTHENTICATED",
                "message": "Request had invalid "
                "authentication credentials. Expected OAuth 2 access token, login cookie or other "
                "valid authentication credential.",
            }
        )
    ),
    _fixed(_js({"code": 400, "message": "Invalid To header", "status": "INVALID_ARGUMENT"})),
)
_OPENAI_ERRORS = (
    _openai_rate_limited,
    _openai_rate_limited,
    _openai_context_length,
    _fixed(_js({"error": {"message": "Request timed out.", "type": "timeout"}})),
)
_AGENT_OVERLOADED = _js(
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
)
_AGENT_ERRORS = (
    *_OPENAI_ERRORS[:2],
    _agent_max_steps,
    _agent_bad_structured_output,
    _fixed(_AGENT_OVERLOADED),
)
_LINEAR_ERRORS = (
    _fixed(
        _js(
            {
                "errors": [
                    {
                        "message": "Argument Validation Error",
                        "extensions": {
                            "code": "INVALID_INPUT",
                            "userPresentableMessage": "teamId must be a UUID.",
                        },
                    }
                ]
            }
        )
    ),
    _fixed(
        _js(
            {
                "errors": [
                    {
                        "message": "Authentication required, not authenticated",
                        "extensions": {"code": "AUTHENTICATION_ERROR"},
                    }
                ]
            }
        )
    ),
)
_GITHUB_ERRORS = (
    _github_rate_limited,
    _fixed(
        _response(
            401,
            {
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            },
        )
    ),
)
_POSTGRES_ERRORS = (
    _fixed('error: password authentication failed for user "analytics"'),
    _fixed("error: canceling statement due to statement timeout"),
    lambda g: f'error: relation "subscriptions_v{g.randint(2, 9)}" does not exist',
)
_NOTION_ERRORS = (
    _notion_too_long,
    _notion_not_shared,
    _fixed(
        _js(
            {
                "object": "error",
                "status": 409,
                "code": "conflict_error",
                "message": "Conflict occurred while saving. Please try again.",
            }
        )
    ),
)
_SENDGRID_ERRORS = (
    _fixed(
        _js(
            {
                "errors": [
                    {
                        "field": "from",
                        "help": None,
                        "message": "The from address does not "
                        "match a verified Sender Identity. Mail cannot be sent until this "
                        "error is resolved.",
                    }
                ]
            }
        )
    ),
    _fixed(_js({"errors": [{"field": None, "message": "authorization required"}]})),
)
_OKTA_ERRORS = (_okta_login_taken, _http_rate_limited, _http_etimedout)
_SHOPIFY_ERRORS = (_shopify_rate_limited,)


# ---------------------------------------------------------------- fake people, things, secrets

_FIRST = (
    "Ana",
    "Liam",
    "Sofia",
    "Noah",
    "Mia",
    "Lucas",
    "Emma",
    "Mateo",
    "Olivia",
    "Ethan",
    "Chloé",
    "Arjun",
    "Yuki",
    "Fatima",
    "Jonas",
    "Priya",
    "Diego",
    "Hannah",
    "Omar",
    "Zoe",
)
_LAST = (
    "Silva",
    "Nguyen",
    "Müller",
    "Okafor",
    "Kowalski",
    "Tanaka",
    "García",
    "Johnson",
    "Rossi",
    "Dubois",
    "Patel",
    "Haddad",
    "Larsen",
    "Kim",
    "O'Brien",
    "Novak",
)
_COMPANIES = (
    ("Northwind Traders", "northwind.io", 140),
    ("Globex", "globex.com", 5000),
    ("Initech", "initech.co", 420),
    ("Umbrella Health", "umbrella-health.com", 1200),
    ("Stark Logistics", "starklogistics.com", 60),
    ("Hooli", "hooli.xyz", 8),
    ("Wayne Analytics", "wayneanalytics.io", 25),
    ("Pied Piper", "piedpiper.com", 35),
    ("Vandelay Imports", "vandelay.co", 18),
    ("Soylent Foods", "soylentfoods.com", 900),
    ("Tyrell Robotics", "tyrell.ai", 260),
    ("Acme Retail", "acmeretail.shop", 75),
)
_INDUSTRIES = ("Logistics", "Healthcare", "SaaS", "Retail", "Manufacturing", "Fintech", "Food")
_ROLES = (
    "Head of Operations",
    "VP Engineering",
    "Founder & CEO",
    "Marketing Intern",
    "Operations Manager",
    "Student",
    "CTO",
    "Freelance designer",
)
_GOOD_ROLES = frozenset(
    ("Head of Operations", "VP Engineering", "Founder & CEO", "Operations Manager", "CTO")
)
_SUBJECTS = (
    ("Refund for order #{order}", "refund", True),
    ("Where is my order #{order}?", "shipping", False),
    ("Wrong size delivered (order #{order})", "refund", False),
    ("Cancel my subscription", "billing", False),
    ("Invoice copy needed for #{order}", "billing", False),
    ("Package arrived damaged – order {order}", "refund", True),
    ("Can't log in to my account", "account", False),
    ("Discount code not working", "other", False),
)
_PRODUCTS = (
    ("SKU-TEE-BLK-M", "Classic Tee – Black / M", 24.0),
    ("SKU-HOOD-GRY-L", "Zip Hoodie – Grey / L", 69.0),
    ("SKU-MUG-WHT", "Enamel Mug – White", 16.5),
    ("SKU-CAP-NVY", "Dad Cap – Navy", 22.0),
    ("SKU-BAG-TOTE", "Canvas Tote", 18.0),
    ("SKU-SNK-WHT-42", "Court Sneaker – White / 42", 119.0),
    ("SKU-SOCK-3PK", "Crew Socks 3-pack", 14.0),
    ("SKU-JKT-OLV-M", "Field Jacket – Olive / M", 189.0),
)
_VENDORS = (
    "Office Depot",
    "AWS EMEA SARL",
    "WeWork",
    "Figma, Inc.",
    "DHL Express",
    "Twilio Inc.",
    "Notion Labs",
)
_REPOS = ("acme/storefront", "acme/api", "acme/mobile-app", "acme/infra")
_ISSUE_TITLES = (
    "Checkout button unresponsive on Safari 17",
    "500 on /api/orders when cart is empty",
    "Dark mode: unreadable table headers",
    "Webhook retries flood the queue",
    "Typo in password reset email",
    "Android app crashes on launch (v4.12.0)",
)
_MEETINGS = (
    "Weekly product sync",
    "Q4 planning",
    "Customer call – Globex renewal",
    "Design review: checkout v2",
    "Incident review INC-2291",
    "1:1 Ana / Liam",
)
_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "contractsent",
    "closedwon",
)
# The models agents run on (provider, model), with their share of agent runs: names only.
_MODELS = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4.1-mini"),
    ("anthropic", "claude-sonnet-4"),
    ("anthropic", "claude-3-5-haiku"),
    ("google", "gemini-2.0-flash"),
)
_MODEL_WEIGHTS = (0.3, 0.2, 0.2, 0.12, 0.18)
# The models of the generator's first agent runs: still drawn from the main random state, so that
# every other run stays as it was; the model itself is the agent's own pick (see _agent_rng).
_FIRST_MODELS = (
    ("openai", "gpt-4.1"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
)
_TOOL_FAIL_RATE = 0.05  # a tool call that fails while the agent carries on
_USAGE_RATE = 0.75  # agent outputs that record their token usage
_LOOP_RATE = 0.3  # of the agents that fail: kept calling tools until maxSteps stopped them
_HANG_RATE = 0.2  # of the agents that fail: stopped inside a tool call that never returned
_SHEET_ID = "1Bx9Kq2LmN3oP4rS5tU6vW7xY8zA9bC0dE1fG2hI3jK4"


def _make_secrets() -> dict[str, str]:
    """Connection secrets, fixed like a real connection's (the same key in every run)."""
    g = random.Random("runs-explorer/secrets")
    return {
        "jira": "Basic " + _new_id(g, 40) + "==",
        "jira_cookie": (
            f"atlassian.xsrf.token={_upper_id(g, 24)}_lin; JSESSIONID={_hex(g, 32).upper()}"
        ),
        "mindee": "Token " + _hex(g, 32),
        "clearbit": "Bearer sk_live_" + _hex(g, 32),
        "hunter": _hex(g, 40),
        "okta": "SSWS 00" + _new_id(g, 40),
        "whsec": "whsec_" + _new_id(g, 32),
        "pg": _new_id(g, 18),
    }


_SECRETS = _make_secrets()


def _line_items(g: random.Random) -> list[dict]:
    picks = g.sample(_PRODUCTS, g.randint(1, 5))
    return [
        {"sku": sku, "title": title, "quantity": g.choice((1, 1, 1, 2, 3)), "price": f"{price:.2f}"}
        for sku, title, price in picks
    ]


def _make_person(g: random.Random) -> dict:
    first, last = g.choice(_FIRST), g.choice(_LAST)
    company, domain, employees = g.choice(_COMPANIES)
    role = g.choice(_ROLES)
    mailbox = g.choice(("gmail.com", "outlook.com", "proton.me"))
    return {
        "first": first,
        "last": last,
        "name": f"{first} {last}",
        "email": f"{_ascii(first)}.{_ascii(last)}@{mailbox}",
        "work_email": f"{_ascii(first)}@{domain}",
        "login": f"{_ascii(first)}.{_ascii(last)}",
        "company": company,
        "domain": domain,
        "employees": employees,
        "role": role,
        "industry": g.choice(_INDUSTRIES),
        "score": g.randint(12, 98),
        "qualified": employees >= 50 and role in _GOOD_ROLES,
    }


def _make_order(g: random.Random) -> dict:
    subject, category, urgent = g.choice(_SUBJECTS)
    order, items = g.randint(1001, 48999), _line_items(g)
    total = sum(float(item["price"]) * item["quantity"] for item in items)
    return {
        "order": order,
        "order_gid": g.randint(5_000_000_000_000, 5_999_999_999_999),
        "subject": subject.format(order=order),
        "category": category,
        "priority": "high" if urgent or g.random() < 0.15 else "normal",
        "items": items,
        "total": f"{total:.2f}",
        "currency": g.choice(("USD", "USD", "EUR", "GBP")),
        "amount_due": g.choice((2900, 4900, 9900, 49900, 129900, 250000)),
    }


def _make_references(g: random.Random) -> dict:
    return {
        "deal_id": str(g.randint(10**10, 10**11)),
        "stage": g.choice(_STAGES),
        "ticket": g.randint(20000, 99999),
        "channel": "C0" + _upper_id(g, 9),
        "ts": f"{g.randint(1_760_000_000, 1_790_000_000)}.{g.randrange(10**6):06d}",
        "bot": "B0" + _upper_id(g, 9),
        "msg_id": _hex(g, 16),
        "file_id": _new_id(g, 33),
        "invoice": f"INV-{g.randint(10000, 99999)}",
        "vendor": g.choice(_VENDORS),
        "vendor_id": str(g.randint(10, 900)),
        "customer_id": "cus_" + _new_id(g, 14),
        "issue": g.randint(120, 4800),
        "repo": g.choice(_REPOS),
        "issue_title": g.choice(_ISSUE_TITLES),
        "team_id": _uuid(g),
        "uuid": _uuid(g),
        "record_id": "rec" + _new_id(g, 14),
        "meeting": g.choice(_MEETINGS),
        "meeting_id": g.randint(80_000_000_000, 99_999_999_999),
        "minutes": g.randint(12, 95),
        "password": _new_id(g, 10),
        "token": _new_id(g, 26),
        "sheet_row": g.randint(2, 9000),
    }


def _make_context(g: random.Random) -> dict:
    """One coherent set of fake values that a scenario's payloads all talk about."""
    return {**_make_person(g), **_make_order(g), **_make_references(g)}


# ---------------------------------------------------------------- payload builders
# A payload builder maps a scenario context to a step's (input, output).


def _slack_io(text: Callable[[dict], str], channel_name: str):
    def io(c):
        message = text(c)
        sent = {
            "type": "message",
            "text": message,
            "bot_id": c["bot"],
            "channel_name": channel_name,
        }
        return (
            {
                "channel": c["channel"],
                "text": message,
                "username": "Acme Bot",
                "unfurl_links": False,
            },
            {"ok": True, "channel": c["channel"], "ts": c["ts"], "message": sent},
        )

    return io


def _gmail_io(subject: Callable[[dict], str], body: Callable[[dict], str]):
    def io(c):
        return (
            {
                "receiver": [c["work_email"]],
                "subject": subject(c),
                "body_type": "plain_text",
                "body": body(c),
            },
            {"id": c["msg_id"][::-1], "threadId": c["msg_id"], "labelIds": ["SENT"]},
        )

    return io


def _openai_io(model: str, prompt: Callable[[dict], str], answer: Callable[[dict], str]):
    def io(c):
        return (
            {"model": model, "prompt": prompt(c), "temperature": 0.3, "maxTokens": 800},
            answer(c),
        )

    return io


def _sheet_row_io(values: Callable[[dict], list]):
    def io(c):
        row = c["sheet_row"] + c.get("index", 0)
        return (
            {"spreadsheetId": _SHEET_ID, "sheetId": 0, "values": values(c)},
            {
                "spreadsheetId": _SHEET_ID,
                "updatedRange": f"Deals!A{row}:F{row}",
                "updatedRows": 1,
                "updatedColumns": 6,
            },
        )

    return io


def _http_io(
    method: str,
    url: Callable[[dict], str],
    headers: dict,
    body: Callable[[dict], dict | None],
    response: Callable[[dict], dict],
    query: Callable[[dict], dict] = lambda c: {},
):
    def io(c):
        return (
            {
                "method": method,
                "url": url(c),
                "headers": headers,
                "queryParams": query(c),
                "body": body(c),
                "failsafe": False,
            },
            {
                "status": 200,
                "headers": {"content-type": "application/json; charset=utf-8"},
                "body": response(c),
            },
        )

    return io


def _no_body(c: dict) -> None:
    return None


# ---------------------------------------------------------------- flow catalog (specs)


class _Step(NamedTuple):
    display: str
    type: str  # PIECE, CODE, LOOP_ON_ITEMS, ROUTER
    settings: dict
    io: Callable | None = None  # context -> (input, output)
    errors: tuple = ()
    kind: str = "api"  # duration profile, see _STEP_TIMES
    body: tuple = ()  # loop body
    items: Callable | None = None  # context -> loop items
    branches: tuple = ()  # ((branchName, steps), ...)
    choose: Callable | None = None  # context -> taken branch index
    pause: str | None = None  # DELAY or WEBHOOK
    agent: Callable | None = None  # (context, rng) -> _AgentPlan


class _Trigger(NamedTuple):
    display: str
    piece: str | None  # None: an EMPTY trigger
    trigger_name: str | None
    io: Callable  # context -> output


class _FlowSpec(NamedTuple):
    name: str
    project: int
    weight: float  # relative volume; 0 for scheduled flows
    trigger: _Trigger
    steps: tuple
    base_fail: float
    tags: tuple = ()
    schedule: str | None = None  # "weekdays 08:30" or "mondays 07:00"
    spike: tuple | None = None  # (step name, extra failure rate, error maker)
    parent: str | None = None  # runs are subflow runs of this flow


def _piece(display, piece, action, io, errors=(), kind="api", pause=None) -> _Step:
    settings = {"pieceName": f"@activepieces/piece-{piece}", "actionName": action}
    return _Step(display, "PIECE", settings, io, tuple(errors), kind, pause=pause)


_CODE_SOURCE = {
    "code": "export const code = async (inputs) => {\n  return inputs;\n};",
    "packageJson": "{}",
}


def _code(display, io, errors=_CODE_ERRORS) -> _Step:
    settings = {"sourceCode": _CODE_SOURCE, "input": {}}
    return _Step(display, "CODE", settings, io, tuple(errors), "code")


def _agent_step(display, plan) -> _Step:
    settings = {"pieceName": "@activepieces/piece-ai", "actionName": "run_agent"}
    return _Step(display, "PIECE", settings, errors=_AGENT_ERRORS, kind="agent", agent=plan)


def _loop(display, expression, items, body) -> _Step:
    return _Step(
        display,
        "LOOP_ON_ITEMS",
        {"items": expression},
        kind="router",
        body=tuple(body),
        items=items,
    )


def _router(display, branches, choose) -> _Step:
    last = len(branches) - 1
    settings = {
        "branches": [
            {"branchName": name, "branchType": "FALLBACK" if i == last else "CONDITION"}
            for i, (name, _) in enumerate(branches)
        ],
        "executionType": "EXECUTE_FIRST_MATCH",
    }
    chains = tuple((name, tuple(steps)) for name, steps in branches)
    return _Step(display, "ROUTER", settings, kind="router", branches=chains, choose=choose)


def _trigger(display, piece, name, io) -> _Trigger:
    return _Trigger(display, piece and f"@activepieces/piece-{piece}", name, io)


# ---------------------------------------------------------------- Run Agent plans


class _ToolCall(NamedTuple):
    kind: str  # PIECE, FLOW, MCP or KNOWLEDGE_BASE
    name: str
    call_id: str
    input: dict
    offset: int  # ms after the agent step started
    length: int | None  # None: it never returned (the block stays in-progress)
    output: dict | None


class _AgentPlan(NamedTuple):
    input: dict
    prompt: str
    blocks: tuple  # markdown dicts (shared as they are) and _ToolCall
    failed_blocks: tuple
    structured: dict
    duration: int
    failed_duration: int
    usage: dict | None = None  # token counts its output records, when it records them
    failed_usage: dict | None = None
    stopped_at_max_steps: bool = False  # how its step ends when it fails: see _failure_shape


def _tool_output(resolved: dict, result, error: str | None) -> dict:
    if error:
        return {
            "status": "FAILED",
            "output": None,
            "resolvedInput": resolved,
            "errorMessage": error,
        }
    return {"status": "SUCCESS", "output": result, "resolvedInput": resolved}


def _agent_rng(g: random.Random) -> random.Random:
    """A random state of the agent's own, derived from the main one without drawing from it: what
    agent runs gained later (models, tool failures, hangs, loops, token counts) is drawn here, so
    that the main state, and every other run, stays as it was."""
    return random.Random(repr(g.getstate()[1]))


_TOOL_ERRORS = (
    lambda name: _response(429, {"message": f"{name}: rate limit exceeded, retry in 20s"}),
    lambda name: _response(500, {"message": f"{name}: internal error"}),
    lambda name: f"Tool {name} timed out after 30000 ms",
)


def _plan_agent(g, prompt, max_steps, thoughts, calls, structured, extra=()) -> _AgentPlan:
    """Lays thoughts and tool calls out in time.

    calls: (kind, toolName, input, resolvedInput, output, errorMessage or None); thoughts: one
    markdown before each call and a final one. extra: (thought, call) pairs the agent may also
    make (a knowledge base search), each on its own roll, after the calls.
    """
    side = _agent_rng(g)
    g.choice(_FIRST_MODELS)  # drawn as the first agent runs drew their model (see _FIRST_MODELS)
    provider, model = side.choices(_MODELS, _MODEL_WEIGHTS)[0]
    prefix = "toolu_" if provider == "anthropic" else "call_"
    fail_at = g.randrange(len(calls))  # where the timeline stops if the whole agent step fails
    blocks: list[dict | _ToolCall] = []
    failed: tuple[dict | _ToolCall, ...] = ()
    failed_end, t = 0, g.randint(400, 1500)
    for i, (thought, call_spec) in enumerate(zip(thoughts, calls, strict=False)):
        kind, name, args, resolved, result, error = call_spec
        blocks.append({"type": "MARKDOWN", "markdown": thought})
        t += g.randint(500, 3500)
        length = g.randint(1500, 9000) if kind == "FLOW" else g.randint(250, 4500)
        call = _ToolCall(
            kind,
            name,
            prefix + _new_id(g, 24),
            args,
            t,
            length,
            _tool_output(resolved, result, error),
        )
        if i == fail_at:
            unavailable = _response(503, {"message": f"{name} is unavailable"})
            broken = call._replace(output=_tool_output(resolved, None, unavailable))
            failed, failed_end = (*blocks, broken), broken.offset + length
        if error is None and side.random() < _TOOL_FAIL_RATE:
            call = call._replace(
                output=_tool_output(resolved, None, side.choice(_TOOL_ERRORS)(name))
            )
        blocks.append(call)
        t += length
    t = _extra_calls(side, prefix, extra, blocks, t)
    blocks.append({"type": "MARKDOWN", "markdown": thoughts[-1]})
    duration = max(3000, t + g.randint(800, 5000))
    failed_duration = failed_end + g.randint(100, 900)
    failed, failed_duration, looped = _failure_shape(
        side, prefix, blocks, failed, max_steps, failed_duration
    )
    agent_input = {
        "prompt": prompt,
        "aiProviderModel": {"provider": provider, "model": model},
        "maxSteps": max_steps,
    }
    recorded = side.random() < _USAGE_RATE
    return _AgentPlan(
        agent_input,
        prompt,
        tuple(blocks),
        failed,
        structured,
        duration,
        failed_duration,
        _usage(side, prompt, blocks) if recorded else None,
        _usage(side, prompt, failed) if recorded else None,
        looped,
    )


def _extra_calls(side: random.Random, prefix: str, extra, blocks: list, t: int) -> int:
    """The optional calls the agent made this time, after the others; returns the time after."""
    for thought, (kind, name, args, resolved, result, error) in extra:
        if side.random() < 0.5:
            continue
        blocks.append({"type": "MARKDOWN", "markdown": thought})
        t += side.randint(500, 3000)
        length = side.randint(300, 2500)
        output = _tool_output(resolved, result, error)
        blocks.append(_ToolCall(kind, name, prefix + _new_id(side, 24), args, t, length, output))
        t += length
    return t


def _failure_shape(
    side: random.Random, prefix: str, blocks: list, failed: tuple, max_steps: int, duration: int
) -> tuple[tuple, int, bool]:
    """How the agent's timeline ends when its step fails: at a tool that was unavailable (as
    planned), in a tool call that never returned, or calling tools until maxSteps stopped it
    (the last: True)."""
    u = side.random()
    if u < _LOOP_RATE:
        return (*_looping(side, prefix, blocks, max_steps), True)
    if u < _LOOP_RATE + _HANG_RATE:
        hung = failed[-1]._replace(length=None, output=None)
        return (*failed[:-1], hung), hung.offset + side.randint(20_000, 90_000), False
    return failed, duration, False


def _agent_failure_message(plan: _AgentPlan, drawn: str) -> str:
    """The error of a failed agent step, told by how it failed: one stopped at its maxSteps says
    so; any other never claims it did (the drawn error is kept otherwise, so the main random
    state draws as before)."""
    if plan.stopped_at_max_steps:
        limit = plan.input["maxSteps"]
        return f"Agent stopped: reached maxSteps ({limit}) before a final answer"
    if "maxSteps" in drawn:
        return _AGENT_OVERLOADED
    return drawn


def _looping(side: random.Random, prefix: str, blocks: list, max_steps: int) -> tuple[tuple, int]:
    """An agent that kept calling its tools, one a step, until its maxSteps were used up."""
    calls = [block for block in blocks if type(block) is _ToolCall]
    looped: list[dict | _ToolCall] = []
    t = side.randint(400, 1500)
    for step in range(max_steps):
        call = calls[step % len(calls)]
        looped.append({"type": "MARKDOWN", "markdown": _LOOP_THOUGHTS[step % len(_LOOP_THOUGHTS)]})
        t += side.randint(400, 2500)
        length = side.randint(250, 4500)
        looped.append(call._replace(call_id=prefix + _new_id(side, 24), offset=t, length=length))
        t += length
    return tuple(looped), t + side.randint(100, 900)


_LOOP_THOUGHTS = (
    "Let me look that up.",
    "The result is not conclusive; trying again with more detail.",
    "Still missing information; checking once more.",
)


def _usage(side: random.Random, prompt: str, blocks) -> dict:
    """Token counts for a timeline: the prompt and every tool result are read again each step."""
    calls = sum(type(block) is _ToolCall for block in blocks)
    thoughts = sum(type(block) is dict for block in blocks)
    read = (len(prompt) // 4 + 700) * (calls + 1) + 350 * calls * (calls + 1) // 2
    written = 60 * thoughts + 45 * calls + side.randint(20, 180)
    read += side.randint(0, 400)
    return {"inputTokens": read, "outputTokens": written, "totalTokens": read + written}


def _triage_calls(c: dict, g: random.Random, has_order: bool, order_found: bool) -> list[tuple]:
    calls: list[tuple] = []
    if has_order:
        order = {
            "id": c["order_gid"],
            "name": f"#{c['order']}",
            "financial_status": "paid",
            "fulfillment_status": g.choice(("fulfilled", "partial", None)),
            "total_price": c["total"],
        }
        missing = None if order_found else _response(404, {"errors": "Not Found"})
        calls.append(
            (
                "PIECE",
                "shopify-get_order",
                {"instruction": f"Fetch order {c['order']}"},
                {"orderId": str(c["order"])},
                order,
                missing,
            )
        )
    calls.append(
        (
            "PIECE",
            "zendesk-search_tickets",
            {"instruction": f"Find earlier tickets from {c['email']}"},
            {"query": f"requester:{c['email']}"},
            {"count": g.randint(0, 4)},
            None,
        )
    )
    if g.random() < 0.4:
        query = f"{c['category']} policy"
        article = {"title": f"Our {query}", "url": f"https://help.acme.shop/{c['category']}"}
        found = {"results": [article]}
        calls.append(
            (
                "MCP",
                "helpcenter_search",
                {"query": query},
                {"query": query, "limit": 3},
                found,
                None,
            )
        )
    return calls


def _triage_plan(c: dict, g: random.Random) -> _AgentPlan:
    has_order, order_found = _order_number_in(c["subject"]) is not None, g.random() > 0.12
    calls = _triage_calls(c, g, has_order, order_found)
    thoughts = [
        f"I'll fetch order {c['order']} first."
        if has_order
        else "No order number in the email; checking the customer's history.",
        "Checking earlier tickets from this customer."
        if order_found
        else "The order lookup failed (404). Continuing without order details.",
        "Looking up the relevant help-center policy.",
    ][: len(calls)]
    thoughts.append(f"Classified as **{c['category']}** with **{c['priority']}** priority.")
    prompt = (
        "Classify this support email as refund, shipping, billing, account or other, set "
        "priority, and look up the order if there is one.\n"
        f"From: {c['email']}\nSubject: {c['subject']}"
    )
    structured = {
        "category": c["category"],
        "priority": c["priority"],
        "orderId": str(c["order"]) if has_order else None,
        "language": "en",
    }
    return _plan_agent(g, prompt, 10, thoughts, calls, structured, _triage_extra(c))


def _triage_extra(c: dict) -> tuple:
    """What the triage agent may look up besides: the support policies' knowledge base."""
    query = f"{c['category']} policy for {c['priority']} priority tickets"
    passage = {"source": "support-policies.pdf", "page": 4, "text": f"Handling {c['category']}."}
    return (
        (
            "Checking the support policies in the knowledge base.",
            (
                "KNOWLEDGE_BASE",
                "Support policies",
                {"query": query},
                {"query": query, "topK": 3},
                {"results": [passage]},
                None,
            ),
        ),
    )


def _lead_calls(c: dict, g: random.Random) -> list:
    query = f"{c['company']} {c['domain']} company size"
    profile = f"https://www.linkedin.com/company/{c['domain'].split('.')[0]}"
    calls = [
        (
            "MCP",
            "exa_search",
            {"query": query},
            {"query": query, "numResults": 5},
            {"results": [{"title": f"{c['company']} | LinkedIn", "url": profile}]},
            None,
        ),
        (
            "PIECE",
            "hubspot-find_company",
            {"instruction": f"Is {c['domain']} in the CRM?"},
            {"domain": c["domain"]},
            {"found": g.random() < 0.3},
            None,
        ),
    ]
    if g.random() < 0.6:
        calls.append(
            (
                "FLOW",
                "Enrich company domain",
                {"domain": c["domain"]},
                {"domain": c["domain"]},
                {"employees": c["employees"], "industry": c["industry"]},
                None,
            )
        )
    return calls


def _lead_plan(c: dict, g: random.Random) -> _AgentPlan:
    calls = _lead_calls(c, g)
    thoughts = [
        f"Searching the web for {c['company']}.",
        "Checking whether the company is already in HubSpot.",
        "Running the enrichment flow for firmographics.",
    ][: len(calls)]
    verdict = "qualified" if c["qualified"] else "not a fit"
    thoughts.append(
        f"{c['name']} ({c['role']}) at {c['company']}, ~{c['employees']} employees: **{verdict}**."
    )
    prompt = (
        f"Research the lead {c['name']} ({c['role']}) from {c['company']} ({c['domain']}). "
        "Qualified means B2B, 50+ employees and an operations, engineering or "
        "leadership role."
    )
    structured = {
        "qualified": c["qualified"],
        "companySize": c["employees"],
        "industry": c["industry"],
        "score": c["score"],
        "reason": f"{c['employees']} employees, {c['role']}",
    }
    return _plan_agent(g, prompt, 8, thoughts, calls, structured, _lead_extra(c))


def _lead_extra(c: dict) -> tuple:
    """What the lead agent may look up besides: the ideal customer profile, and the CRM's notes
    through its MCP server."""
    profile = {"source": "icp.md", "text": "B2B, 50+ employees, operations or engineering buyer"}
    return (
        (
            "Comparing with our ideal customer profile.",
            (
                "KNOWLEDGE_BASE",
                "Ideal customer profile",
                {"query": f"{c['industry']} fit"},
                {"query": f"{c['industry']} fit", "topK": 2},
                {"results": [profile]},
                None,
            ),
        ),
        (
            "Reading earlier notes on this company.",
            (
                "MCP",
                "crm_notes_search",
                {"company": c["company"]},
                {"company": c["company"], "limit": 5},
                {"notes": []},
                None,
            ),
        ),
    )


# ---------------------------------------------------------------- the flows


def _order_number_in(subject: str) -> str | None:
    digits = "".join(ch if ch.isdigit() else " " for ch in subject).split()
    return digits[0] if digits else None


def _new_email(c: dict) -> dict:
    return {
        "id": c["msg_id"],
        "threadId": c["msg_id"],
        "from": f"{c['name']} <{c['email']}>",
        "to": "support@acme.shop",
        "subject": c["subject"],
        "snippet": f"Hi, {c['subject'].lower()}. Thanks, {c['first']}",
        "labelIds": ["INBOX", "UNREAD"],
    }


def _zendesk_ticket(c: dict) -> tuple:
    url = f"https://acme.zendesk.com/api/v2/tickets/{c['ticket']}.json"
    return (
        {
            "subject": c["subject"],
            "requester": {"name": c["name"], "email": c["email"]},
            "tags": [c["category"]],
        },
        {"ticket": {"id": c["ticket"], "url": url, "status": "new"}},
    )


def _flow_triage() -> _FlowSpec:
    alert = _slack_io(
        lambda c: f":rotating_light: {c['category']} from {c['name']}: {c['subject']}",
        "support-escalations",
    )
    steps = (
        _code(
            "Extract order number",
            lambda c: (
                {"subject": c["subject"]},
                {"orderId": _order_number_in(c["subject"]), "email": c["email"]},
            ),
        ),
        _agent_step("Classify and look up order", _triage_plan),
        _router(
            "Route by priority",
            (
                (
                    "High priority",
                    [
                        _piece(
                            "Alert #support-escalations",
                            "slack",
                            "send_channel_message",
                            alert,
                            _SLACK_ERRORS,
                        )
                    ],
                ),
                (
                    "Otherwise",
                    [
                        _piece(
                            "Create Ticket",
                            "zendesk",
                            "create_ticket",
                            _zendesk_ticket,
                            _ZENDESK_ERRORS,
                        )
                    ],
                ),
            ),
            lambda c: 0 if c["priority"] == "high" else 1,
        ),
        _piece(
            "Send acknowledgement",
            "gmail",
            "reply_to_email",
            lambda c: (
                {"message_id": c["msg_id"], "body": f"Hi {c['first']}, thanks - we're on it."},
                {"id": c["msg_id"][::-1], "threadId": c["msg_id"], "labelIds": ["SENT"]},
            ),
            _GMAIL_ERRORS,
        ),
    )
    trigger = _trigger("New Email", "gmail", "gmail_new_email_received", _new_email)
    return _FlowSpec("Triage support email", 0, 16, trigger, steps, 0.08, ("support",))


def _hubspot_deal(c: dict) -> tuple:
    line_items = [{"id": str(10**9 + i)} for i in range(len(c["items"]))]
    return (
        {
            "dealId": c["deal_id"],
            "additionalProperties": ["amount", "dealstage"],
            "associations": ["line_items"],
        },
        {
            "id": c["deal_id"],
            "properties": {
                "dealname": f"{c['company']} – annual plan",
                "amount": c["total"],
                "dealstage": c["stage"],
            },
            "associations": {"line items": {"results": line_items}},
        },
    )


def _deal_row(c: dict) -> list:
    return [c["deal_id"], c["company"], c["item"]["sku"], c["item"]["quantity"], c["item"]["price"]]


def _flow_hubspot_sheets() -> _FlowSpec:
    steps = (
        _piece("Get Deal", "hubspot", "get_deal", _hubspot_deal, _HUBSPOT_ERRORS),
        _loop(
            "Loop on line items",
            "{{step_1.associations['line items'].results}}",
            lambda c: c["items"],
            (
                _code(
                    "Format row",
                    lambda c: ({"item": c["item"], "deal": c["deal_id"]}, {"row": _deal_row(c)}),
                ),
                _piece("Insert Row", "google-sheets", "insert_row", _sheet_row_io(_deal_row)),
            ),
        ),
        _piece(
            "Update deal summary",
            "google-sheets",
            "update_row",
            _sheet_row_io(lambda c: [c["deal_id"], c["company"], c["stage"], c["total"]]),
            _SHEETS_ERRORS,
        ),
    )
    trigger = _trigger(
        "Deal Stage Updated",
        "hubspot",
        "deal_stage_updated",
        lambda c: {
            "objectId": int(c["deal_id"]),
            "propertyName": "dealstage",
            "propertyValue": c["stage"],
        },
    )
    return _FlowSpec("Sync HubSpot deals to Sheets", 0, 12, trigger, steps, 0.065, ("sales",))


def _jira_issues(c: dict) -> dict:
    assignees = (c["name"], "Liam Kim", "Priya Patel")
    issues = [
        {
            "key": f"ENG-{c['issue'] + i}",
            "fields": {"summary": title, "assignee": {"displayName": name}},
        }
        for i, (title, name) in enumerate(zip(_ISSUE_TITLES, assignees, strict=False))
    ]
    return {"total": len(c["items"]) * 3, "issues": issues}


def _flow_standup_digest() -> _FlowSpec:
    jira_headers = {
        "Authorization": _SECRETS["jira"],
        "Cookie": _SECRETS["jira_cookie"],
        "Accept": "application/json",
    }
    jira_search = "https://acme.atlassian.net/rest/api/3/search?jql=sprint%20in%20openSprints()"
    steps = (
        _piece(
            "Fetch open Jira issues",
            "http",
            "send_request",
            _http_io("GET", lambda c: jira_search, jira_headers, _no_body, _jira_issues),
            _HTTP_ERRORS,
        ),
        _code(
            "Group issues by assignee",
            lambda c: (
                {"issues": "{{step_1.body.issues}}"},
                {
                    "byAssignee": {
                        c["name"]: [f"ENG-{c['issue']}"],
                        "Liam Kim": [f"ENG-{c['issue'] + 1}"],
                    }
                },
            ),
        ),
        _piece(
            "Write standup summary",
            "openai",
            "ask_chatgpt",
            _openai_io(
                "gpt-4o-mini",
                lambda c: "Summarize yesterday's progress per person in 5 bullets.",
                lambda c: (
                    f"• {c['first']}: shipped ENG-{c['issue']}\n"
                    f"• Liam: reviewing ENG-{c['issue'] + 1}"
                ),
            ),
            _OPENAI_ERRORS,
            kind="ai",
        ),
        _piece(
            "Post to #standup",
            "slack",
            "send_channel_message",
            _slack_io(lambda c: f"*Standup digest*\n• {c['first']}: ENG-{c['issue']}", "standup"),
            _SLACK_ERRORS,
        ),
    )
    trigger = _trigger("Every weekday at 08:30", None, None, lambda c: {})
    return _FlowSpec(
        "Daily Slack standup digest",
        0,
        0,
        trigger,
        steps,
        0.06,
        ("engineering",),
        schedule="weekdays 08:30",
    )


def _mindee_prediction(c: dict) -> dict:
    prediction = {
        "invoice_number": {"value": c["invoice"]},
        "supplier_name": {"value": c["vendor"]},
        "total_amount": {"value": float(c["total"])},
    }
    return {"document": {"inference": {"prediction": prediction}}}


def _quickbooks_bill(c: dict) -> tuple:
    bill = {
        "Id": str(c["ticket"]),
        "DocNumber": c["invoice"],
        "TotalAmt": float(c["total"]),
        "VendorRef": {"value": c["vendor_id"], "name": c["vendor"]},
    }
    request = {"vendorId": c["vendor_id"], "docNumber": c["invoice"], "amount": c["total"]}
    return request, {"Bill": bill}


def _flow_invoice_ocr() -> _FlowSpec:
    mindee = "https://api.mindee.net/v1/products/mindee/invoices/v4/predict"
    steps = (
        _piece(
            "OCR invoice (Mindee)",
            "http",
            "send_request",
            _http_io(
                "POST",
                lambda c: mindee,
                {"Authorization": _SECRETS["mindee"]},
                lambda c: {"document": f"https://drive.google.com/uc?id={c['file_id']}"},
                _mindee_prediction,
            ),
            _HTTP_ERRORS,
        ),
        _code(
            "Parse invoice lines",
            lambda c: (
                {"prediction": "{{step_1.body.document.inference.prediction}}"},
                {"vendor": c["vendor"], "invoiceNumber": c["invoice"], "total": c["total"]},
            ),
        ),
        _piece("Create Bill", "quickbooks", "create_bill", _quickbooks_bill, _QUICKBOOKS_ERRORS),
        _piece(
            "Notify #finance",
            "slack",
            "send_channel_message",
            _slack_io(
                lambda c: f"Bill {c['invoice']} from {c['vendor']} ({c['total']} {c['currency']})",
                "finance",
            ),
            _SLACK_ERRORS,
        ),
    )
    trigger = _trigger(
        "New File",
        "google-drive",
        "new_file",
        lambda c: {
            "id": c["file_id"],
            "name": f"{c['invoice']}.pdf",
            "mimeType": "application/pdf",
            "webViewLink": f"https://drive.google.com/file/d/{c['file_id']}/view",
        },
    )
    return _FlowSpec("Invoice OCR to QuickBooks", 1, 5, trigger, steps, 0.13, ("finance",))


def _hubspot_contact(c: dict) -> tuple:
    return (
        {
            "email": c["work_email"],
            "firstname": c["first"],
            "lastname": c["last"],
            "company": c["company"],
        },
        {
            "id": str(c["ticket"] * 1000 + 7),
            "properties": {"email": c["work_email"], "lifecyclestage": "lead"},
        },
    )


def _call_enrich_flow(c: dict) -> tuple:
    return (
        {
            "flow": "Enrich company domain",
            "waitForResponse": True,
            "payload": {"domain": c["domain"], "company": c["company"]},
        },
        _firmographics(c),
    )


def _flow_lead_agent() -> _FlowSpec:
    qualified = [
        _piece("Create Contact", "hubspot", "create_contact", _hubspot_contact, _HUBSPOT_ERRORS),
        _piece("Enrich company domain", "subflows", "callFlow", _call_enrich_flow, kind="subflow"),
        _piece(
            "Ping account owner",
            "slack",
            "send_channel_message",
            _slack_io(
                lambda c: f"New qualified lead: {c['name']} ({c['role']}, {c['company']})", "sales"
            ),
            _SLACK_ERRORS,
        ),
    ]
    nurture = [
        _piece(
            "Add to nurture list",
            "google-sheets",
            "insert_row",
            _sheet_row_io(lambda c: [c["work_email"], c["company"], c["role"], c["score"]]),
            _SHEETS_ERRORS,
        )
    ]
    steps = (
        _agent_step("Research lead", _lead_plan),
        _router(
            "Is qualified?",
            (("Qualified", qualified), ("Not qualified", nurture)),
            lambda c: 0 if c["qualified"] else 1,
        ),
    )
    trigger = _trigger(
        "New Submission",
        "typeform",
        "new_submission",
        lambda c: {
            "form_id": "lEad42Xq",
            "token": c["token"],
            "answers": {
                "email": c["work_email"],
                "name": c["name"],
                "company": c["company"],
                "role": c["role"],
            },
        },
    )
    return _FlowSpec("Lead enrichment agent", 0, 7, trigger, steps, 0.10, ("sales", "ai"))


def _clearbit_company(c: dict) -> dict:
    return {
        "name": c["company"],
        "domain": c["domain"],
        "metrics": {"employees": c["employees"]},
        "category": {"industry": c["industry"]},
    }


def _firmographics(c: dict) -> dict:
    return {"employees": c["employees"], "industry": c["industry"]}


def _flow_enrich_subflow() -> _FlowSpec:
    steps = (
        _piece(
            "Clearbit company lookup",
            "http",
            "send_request",
            _http_io(
                "GET",
                lambda c: f"https://company.clearbit.com/v2/companies/find?domain={c['domain']}",
                {"Authorization": _SECRETS["clearbit"]},
                _no_body,
                _clearbit_company,
            ),
            _HTTP_ERRORS,
        ),
        _piece(
            "Hunter domain search",
            "http",
            "send_request",
            _http_io(
                "GET",
                lambda c: "https://api.hunter.io/v2/domain-search",
                {},
                _no_body,
                lambda c: {"data": {"domain": c["domain"], "organization": c["company"]}},
                query=lambda c: {"domain": c["domain"], "api_key": _SECRETS["hunter"]},
            ),
            _HTTP_ERRORS,
        ),
        _code(
            "Pick firmographics",
            lambda c: (
                {"clearbit": "{{step_1.body}}", "hunter": "{{step_2.body.data}}"},
                _firmographics(c),
            ),
        ),
        _piece(
            "Return Response",
            "subflows",
            "returnResponse",
            lambda c: ({"mode": "simple", "response": _firmographics(c)}, _firmographics(c)),
            kind="code",
        ),
    )
    trigger = _trigger(
        "Callable Flow",
        "subflows",
        "callableFlow",
        lambda c: {"data": {"domain": c["domain"], "company": c["company"]}},
    )
    return _FlowSpec(
        "Enrich company domain", 0, 3, trigger, steps, 0.07, parent="Lead enrichment agent"
    )


def _stripe_webhook(c: dict) -> dict:
    invoice = {
        "id": "in_" + c["token"][2:],
        "customer": c["customer_id"],
        "customer_email": c["email"],
        "amount_due": c["amount_due"],
        "currency": c["currency"].lower(),
        "attempt_count": c["minutes"] % 4 + 1,
    }
    headers = {
        "content-type": "application/json; charset=utf-8",
        "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "stripe-signature": f"t={c['ticket'] * 17},v1={c['msg_id'] * 4}",
    }
    body = {
        "id": "evt_" + c["token"][:24],
        "type": "invoice.payment_failed",
        "data": {"object": invoice},
    }
    return {"method": "POST", "headers": headers, "queryParams": {}, "body": body}


def _verify_signature(c: dict) -> tuple:
    return (
        {
            "payload": "{{trigger.body}}",
            "signature": "{{trigger.headers['stripe-signature']}}",
            "webhook_secret": _SECRETS["whsec"],
        },
        {"valid": True, "eventId": "evt_" + c["token"][:24]},
    )


def _flow_stripe_dunning() -> _FlowSpec:
    manager = _slack_io(
        lambda c: f"Payment of {c['amount_due'] / 100:.2f} failed for {c['name']}", "dm"
    )
    steps = (
        _code("Verify webhook signature", _verify_signature, _SIGNATURE_ERRORS),
        _piece(
            "Retrieve Customer",
            "stripe",
            "retrieve_customer",
            lambda c: (
                {"customer": c["customer_id"]},
                {
                    "id": c["customer_id"],
                    "email": c["email"],
                    "name": c["name"],
                    "delinquent": True,
                },
            ),
            _STRIPE_ERRORS,
        ),
        _router(
            "High-value customer?",
            (
                (
                    "Over $1,000",
                    [
                        _piece(
                            "Alert account manager",
                            "slack",
                            "send_direct_message",
                            manager,
                            _SLACK_ERRORS,
                        )
                    ],
                ),
                ("Otherwise", []),
            ),
            lambda c: 0 if c["amount_due"] > 100_000 else 1,
        ),
        _piece(
            "Send dunning email",
            "sendgrid",
            "send_email",
            lambda c: (
                {
                    "to": c["email"],
                    "from": "billing@acme.shop",
                    "template_id": "d-" + c["msg_id"] * 2,
                    "subject": "Action needed: your payment failed",
                },
                {"statusCode": 202, "headers": {"x-message-id": c["token"]}},
            ),
            _SENDGRID_ERRORS,
        ),
    )
    trigger = _trigger("Catch Webhook", None, None, _stripe_webhook)
    return _FlowSpec("Stripe payment failed alerts", 1, 4, trigger, steps, 0.065, ("billing",))


def _shopify_order(c: dict) -> dict:
    return {
        "id": c["order_gid"],
        "order_number": c["order"],
        "email": c["email"],
        "total_price": c["total"],
        "currency": c["currency"],
        "line_items": c["items"],
        "customer": {"first_name": c["first"], "last_name": c["last"]},
    }


def _airtable_order(c: dict) -> tuple:
    fields = {
        "Order": f"#{c['order']}",
        "Customer": c["name"],
        "Order Total": c["total"],
        "Items": len(c["items"]),
    }
    return (
        {"base": "appX4kP9sQ2rT7uV1", "tableId": "tblOrders8Hj2Lm", "fields": fields},
        {"id": c["record_id"], "fields": {**fields, "Order Total": float(c["total"])}},
    )


def _airtable_line(c: dict) -> tuple:
    item = c["item"]
    fields = {
        "Order": [c["record_id"]],
        "SKU": item["sku"],
        "Qty": item["quantity"],
        "Price": item["price"],
    }
    return (
        {"base": "appX4kP9sQ2rT7uV1", "tableId": "tblLines3Df9Qa", "fields": fields},
        {"id": f"{c['record_id'][:-2]}{c['index']:02d}", "fields": {"SKU": item["sku"]}},
    )


def _flow_shopify_airtable() -> _FlowSpec:
    steps = (
        _code(
            "Normalize order",
            lambda c: (
                {"order": "{{trigger}}"},
                {
                    "orderNumber": f"#{c['order']}",
                    "customer": c["name"],
                    "total": c["total"],
                    "itemCount": len(c["items"]),
                },
            ),
        ),
        _piece(
            "Create Order Record",
            "airtable",
            "airtable_create_record",
            _airtable_order,
            _AIRTABLE_ERRORS,
        ),
        _loop(
            "For each line item",
            "{{trigger.line_items}}",
            lambda c: c["items"],
            (_piece("Add Line Item", "airtable", "airtable_create_record", _airtable_line),),
        ),
        _piece(
            "Tag order as synced",
            "shopify",
            "update_order",
            lambda c: (
                {"orderId": c["order_gid"], "tags": "airtable-synced"},
                {"order": {"id": c["order_gid"], "tags": "airtable-synced"}},
            ),
            _SHOPIFY_ERRORS,
        ),
    )
    trigger = _trigger("New Order", "shopify", "new_order", _shopify_order)
    return _FlowSpec(
        "New Shopify order to Airtable",
        0,
        11,
        trigger,
        steps,
        0.03,
        ("ecommerce",),
        spike=("step_2", 0.27, _airtable_bad_total),
    )


def _github_issue(c: dict) -> dict:
    issue = {
        "number": c["issue"],
        "title": c["issue_title"],
        "html_url": f"https://github.com/{c['repo']}/issues/{c['issue']}",
        "user": {"login": _ascii(c["first"]) + str(c["minutes"])},
        "labels": [{"name": "bug"}],
    }
    return {"action": "opened", "repository": {"full_name": c["repo"]}, "issue": issue}


def _linear_issue(c: dict) -> tuple:
    key = f"ENG-{c['issue'] + 3000}"
    return (
        {
            "team_id": c["team_id"],
            "title": c["issue_title"],
            "priority": 2,
            "description": f"From https://github.com/{c['repo']}/issues/{c['issue']}",
        },
        {
            "success": True,
            "issue": {
                "id": c["uuid"],
                "identifier": key,
                "url": f"https://linear.app/acme/issue/{key}",
            },
        },
    )


def _github_comment(c: dict) -> tuple:
    comment_id = c["order_gid"] // 1000
    url = f"https://github.com/{c['repo']}/issues/{c['issue']}#issuecomment-{comment_id}"
    return (
        {
            "repository": {"owner": "acme", "repo": c["repo"].split("/")[1]},
            "issue_number": c["issue"],
            "comment": f"Tracked in Linear: ENG-{c['issue'] + 3000}",
        },
        {"id": comment_id, "html_url": url},
    )


def _flow_github_linear() -> _FlowSpec:
    steps = (
        _code(
            "Map labels to team",
            lambda c: (
                {"labels": ["bug"], "repo": c["repo"]},
                {"teamId": c["team_id"], "priority": 2},
            ),
        ),
        _piece("Create Issue", "linear", "linear_create_issue", _linear_issue, _LINEAR_ERRORS),
        _piece(
            "Comment with Linear link",
            "github",
            "github_create_comment_on_a_issue",
            _github_comment,
            _GITHUB_ERRORS,
        ),
    )
    trigger = _trigger("New Issue", "github", "new_issue", _github_issue)
    return _FlowSpec("GitHub issues to Linear", 0, 3.5, trigger, steps, 0.06, ("engineering",))


def _okta_user(c: dict) -> dict:
    return {
        "profile": {
            "firstName": c["first"],
            "lastName": c["last"],
            "login": f"{c['login']}@acme.shop",
        }
    }


def _flow_onboarding() -> _FlowSpec:
    okta = "https://acme.okta.com/api/v1/users?activate=true"
    steps = (
        _piece(
            "Wait for HR approval",
            "approval",
            "wait_for_approval",
            lambda c: ({}, {"approved": True}),
            kind="pause",
            pause="WEBHOOK",
        ),
        _piece(
            "Create Okta user",
            "http",
            "send_request",
            _http_io(
                "POST",
                lambda c: okta,
                {"Authorization": _SECRETS["okta"]},
                _okta_user,
                lambda c: {"id": "00u" + c["token"][:17], "status": "PROVISIONED"},
            ),
            _OKTA_ERRORS,
        ),
        _code(
            "Generate temporary password",
            lambda c: (
                {"login": f"{c['login']}@acme.shop"},
                {"username": c["login"], "password": c["password"] + "!7"},
            ),
        ),
        _piece(
            "Welcome DM",
            "slack",
            "send_direct_message",
            _slack_io(lambda c: f"Welcome aboard, {c['first']}! Your laptop ships Monday.", "dm"),
            _SLACK_ERRORS,
        ),
    )
    trigger = _trigger(
        "New Response",
        "google-forms",
        "new_response",
        lambda c: {
            "responseId": c["token"],
            "answers": {
                "Full name": c["name"],
                "Personal email": c["email"],
                "Team": c["industry"],
            },
        },
    )
    return _FlowSpec("Onboard new employee", 1, 0.4, trigger, steps, 0.05, ("hr",))


def _churn_query(c: dict) -> tuple:
    connection = {
        "host": "analytics-db.internal",
        "port": 5432,
        "database": "warehouse",
        "user": "analytics",
        "password": _SECRETS["pg"],
    }
    query = (
        "SELECT account_id, plan, mrr FROM subscriptions "
        "WHERE canceled_at > now() - interval '7 days'"
    )
    rows = [{"account_id": c["customer_id"], "plan": "growth", "mrr": c["amount_due"] / 100}]
    return {"query": query, "connection": connection}, {"rowCount": c["minutes"] // 4, "rows": rows}


def _flow_churn_report() -> _FlowSpec:
    steps = (
        _piece("Query churned accounts", "postgres", "run-query", _churn_query, _POSTGRES_ERRORS),
        _code(
            "Build CSV",
            lambda c: (
                {"rows": "{{step_1.rows}}"},
                {
                    "csv": "account_id,plan,mrr\n"
                    f"{c['customer_id']},growth,{c['amount_due'] / 100}",
                    "mrrLost": c["amount_due"] / 100,
                },
            ),
        ),
        _piece(
            "Email report to leadership",
            "gmail",
            "send_email",
            _gmail_io(
                lambda c: "Weekly churn report",
                lambda c: f"MRR lost this week: {c['amount_due'] / 100:.2f}",
            ),
            _GMAIL_ERRORS,
        ),
    )
    trigger = _trigger(
        "Every Week",
        "schedule",
        "every_week",
        lambda c: {"day_of_week": 1, "hour_of_the_day": 7, "timezone": "UTC"},
    )
    return _FlowSpec(
        "Weekly churn report", 1, 0, trigger, steps, 0.10, ("reporting",), schedule="mondays 07:00"
    )


def _flow_calendly_followup() -> _FlowSpec:
    steps = (
        _piece(
            "Wait 2 days",
            "delay",
            "delayFor",
            lambda c: ({"delayFor": 2, "unit": "DAYS"}, {"success": True}),
            kind="pause",
            pause="DELAY",
        ),
        _piece(
            "Draft follow-up email",
            "openai",
            "ask_chatgpt",
            _openai_io(
                "gpt-4o-mini",
                lambda c: f"Write a short follow-up to {c['name']} at {c['company']} after a demo.",
                lambda c: f"Hi {c['first']},\n\nThanks again for your time on the demo...",
            ),
            _OPENAI_ERRORS,
            kind="ai",
        ),
        _piece(
            "Send follow-up",
            "gmail",
            "send_email",
            _gmail_io(lambda c: f"Following up on our demo, {c['first']}", lambda c: "{{step_2}}"),
            _GMAIL_ERRORS,
        ),
    )
    trigger = _trigger(
        "Invitee Created",
        "calendly",
        "invitee_created",
        lambda c: {
            "event": "invitee.created",
            "payload": {
                "email": c["work_email"],
                "name": c["name"],
                "event_type": {"name": "Product demo"},
                "questions_and_answers": [{"question": "Company", "answer": c["company"]}],
            },
        },
    )
    return _FlowSpec("Calendly meeting follow-up", 0, 3, trigger, steps, 0.05, ("sales",))


def _zoom_recording(c: dict) -> dict:
    download = f"https://zoom.us/rec/download/{c['token']}"
    recording = {
        "id": c["meeting_id"],
        "topic": c["meeting"],
        "host_email": c["work_email"],
        "duration": c["minutes"],
        "password": c["password"],
        "recording_files": [{"file_type": "M4A", "download_url": download}],
    }
    download_token = "eyJhbGciOiJIUzUxMiJ9." + c["token"] + c["msg_id"]
    return {"object": recording, "download_token": download_token}


def _notion_page(c: dict) -> tuple:
    page = c["team_id"].replace("-", "")
    return (
        {
            "database_id": c["uuid"],
            "databaseFields": {"Name": c["meeting"], "Date": "{{trigger.object.start_time}}"},
        },
        {"object": "page", "id": c["team_id"], "url": f"https://www.notion.so/acme/{page}"},
    )


def _flow_zoom_notion() -> _FlowSpec:
    steps = (
        _piece(
            "Transcribe recording",
            "openai",
            "transcribe",
            lambda c: (
                {"audio": f"https://zoom.us/rec/download/{c['token']}", "model": "whisper-1"},
                f"Okay, let's get started with {c['meeting']}...",
            ),
            _OPENAI_ERRORS,
            kind="audio",
        ),
        _piece(
            "Summarize meeting",
            "openai",
            "ask_chatgpt",
            _openai_io(
                "gpt-4.1",
                lambda c: "Summarize this transcript into decisions and action items.",
                lambda c: (
                    f"## {c['meeting']}\n**Decisions**\n- Ship on Thursday\n"
                    f"**Action items**\n- {c['first']}: update the roadmap"
                ),
            ),
            _OPENAI_ERRORS,
            kind="ai",
        ),
        _piece(
            "Create meeting note", "notion", "create_database_item", _notion_page, _NOTION_ERRORS
        ),
    )
    trigger = _trigger("New Recording", "zoom", "zoom_new_recording", _zoom_recording)
    return _FlowSpec(
        "Summarize Zoom recordings to Notion", 0, 1.5, trigger, steps, 0.11, ("meetings", "ai")
    )


_FLOW_SPECS: tuple[_FlowSpec, ...] = (
    _flow_triage(),
    _flow_hubspot_sheets(),
    _flow_standup_digest(),
    _flow_invoice_ocr(),
    _flow_lead_agent(),
    _flow_enrich_subflow(),
    _flow_stripe_dunning(),
    _flow_shopify_airtable(),
    _flow_github_linear(),
    _flow_onboarding(),
    _flow_churn_report(),
    _flow_calendly_followup(),
    _flow_zoom_notion(),
)
_PARENT_FLOWS = frozenset(spec.parent for spec in _FLOW_SPECS if spec.parent)


# ---------------------------------------------------------------- templates: step trees, scenarios


class _Named(NamedTuple):
    name: str
    step: _Step
    body: tuple  # loop body, _Named
    branches: tuple  # ((branchName, (_Named, ...)), ...)


class _Exec(NamedTuple):
    """One executed step of a scenario, ready to be stamped into runs."""

    name: str
    type: str
    input: object
    output: object
    lo: int  # duration: lo + spread * u1 * u2
    spread: int
    agent: _AgentPlan | None
    pause: str | None
    tasks: int  # billing units (loop bodies count once per iteration)
    display: str
    errors: tuple
    weight: float  # how likely this step is the one that fails


class _Scenario(NamedTuple):
    path: tuple  # _Exec in execution order, trigger first
    fallible: tuple  # indexes into path
    fail_cum: tuple  # cumulative failure weights of `fallible`
    position_of: dict  # step name -> index into path


class _Version(NamedTuple):
    id: str
    record: dict  # the flowVersion object runs carry
    hot: tuple | None  # (step name, extra failure rate, error maker): this version broke a step


def _number_steps(steps: tuple, counter: Iterator[int]) -> tuple:
    """Names steps step_1..step_n depth-first, as the builder numbers them."""
    named = []
    for step in steps:
        name = f"step_{next(counter)}"
        body = _number_steps(step.body, counter)
        branches = tuple((branch, _number_steps(chain, counter)) for branch, chain in step.branches)
        named.append(_Named(name, step, body, branches))
    return tuple(named)


def _link_chain(nodes: tuple) -> dict | None:
    """The engine's linked step structure: each action points at its nextAction."""
    following = None
    for node in reversed(nodes):
        action = {
            "name": node.name,
            "displayName": node.step.display,
            "type": node.step.type,
            "settings": node.step.settings,
            "valid": True,
        }
        if node.step.type == "LOOP_ON_ITEMS":
            action["firstLoopAction"] = _link_chain(node.body)
        if node.step.type == "ROUTER":
            action["children"] = [_link_chain(chain) for _, chain in node.branches]
        if following is not None:
            action["nextAction"] = following
        following = action
    return following


def _trigger_tree(trigger: _Trigger, nodes: tuple) -> dict:
    settings = (
        {"pieceName": trigger.piece, "triggerName": trigger.trigger_name} if trigger.piece else {}
    )
    tree = {
        "name": "trigger",
        "displayName": trigger.display,
        "type": "PIECE_TRIGGER" if trigger.piece else "EMPTY",
        "settings": settings,
        "valid": True,
    }
    first = _link_chain(nodes)
    if first is not None:
        tree["nextAction"] = first
    return tree


def _action_exec(node: _Named, c: dict) -> _Exec:
    step = node.step
    assert step.io is not None, f"{node.name}: an action step says what it reads and returns"
    step_input, step_output = step.io(c)
    lo, spread = _STEP_TIMES[step.kind]
    weight = _FAIL_WEIGHT.get(step.kind, 0.0) if step.errors else 0.0
    return _Exec(
        node.name,
        step.type,
        step_input,
        step_output,
        lo,
        spread,
        None,
        step.pause,
        1,
        step.display,
        step.errors,
        weight,
    )


def _succeeded(node: _Named, c: dict, g: random.Random) -> tuple[dict, int]:
    """A finished step output with a fixed duration (used inside loop iterations)."""
    assert node.step.io is not None, f"{node.name}: a step in a loop says what it does"
    step_input, step_output = node.step.io(c)
    lo, spread = _STEP_TIMES[node.step.kind]
    duration = lo + int(spread * g.random() * g.random())
    return {
        "type": node.step.type,
        "status": "SUCCEEDED",
        "input": step_input,
        "output": step_output,
        "duration": duration,
    }, duration


def _loop_exec(node: _Named, c: dict, g: random.Random) -> _Exec:
    assert node.step.items is not None, f"{node.name}: a loop says what it loops over"
    items = node.step.items(c)
    iterations, total = [], 0
    for index, item in enumerate(items, start=1):
        scoped = dict(c, item=item, index=index)
        iteration = {}
        for child in node.body:
            iteration[child.name], duration = _succeeded(child, scoped, g)
            total += duration
        iterations.append(iteration)
    output = {"item": items[-1], "index": len(items), "iterations": iterations}
    tasks = 1 + len(items) * len(node.body)
    return _Exec(
        node.name,
        "LOOP_ON_ITEMS",
        {"items": items},
        output,
        total + 2,
        8,
        None,
        None,
        tasks,
        node.step.display,
        (),
        0.0,
    )


def _router_exec(node: _Named, taken: int) -> _Exec:
    branches = [
        {"branchName": name, "branchIndex": i, "evaluation": i == taken}
        for i, (name, _) in enumerate(node.branches)
    ]
    lo, spread = _STEP_TIMES["router"]
    return _Exec(
        node.name,
        "ROUTER",
        node.step.settings,
        {"branches": branches},
        lo,
        spread,
        None,
        None,
        1,
        node.step.display,
        (),
        0.0,
    )


def _agent_exec(node: _Named, c: dict, g: random.Random) -> _Exec:
    assert node.step.agent is not None, f"{node.name}: an agent step has its plan"
    plan = node.step.agent(c, g)
    return _Exec(
        node.name,
        "PIECE",
        plan.input,
        None,
        plan.duration,
        0,
        plan,
        None,
        1,
        node.step.display,
        node.step.errors,
        _FAIL_WEIGHT["agent"],
    )


def _append_execs(nodes: tuple, c: dict, g: random.Random, path: list) -> None:
    for node in nodes:
        kind = node.step.type
        if kind == "LOOP_ON_ITEMS":
            path.append(_loop_exec(node, c, g))
        elif kind == "ROUTER":
            taken = node.step.choose(c)
            path.append(_router_exec(node, taken))
            _append_execs(node.branches[taken][1], c, g, path)
        elif node.step.agent is not None:
            path.append(_agent_exec(node, c, g))
        else:
            path.append(_action_exec(node, c))


def _build_scenario(spec: _FlowSpec, nodes: tuple, g: random.Random) -> _Scenario:
    c = _make_context(g)
    trigger_type = "PIECE_TRIGGER" if spec.trigger.piece else "EMPTY"
    path = [
        _Exec(
            "trigger",
            trigger_type,
            {},
            spec.trigger.io(c),
            0,
            0,
            None,
            None,
            0,
            spec.trigger.display,
            (),
            0.0,
        )
    ]
    _append_execs(nodes, c, g, path)
    fallible = tuple(i for i, step in enumerate(path) if step.weight > 0)
    fail_cum = tuple(itertools.accumulate(path[i].weight for i in fallible))
    return _Scenario(tuple(path), fallible, fail_cum, {step.name: i for i, step in enumerate(path)})


def _make_project_ids() -> tuple[str, str]:
    g = random.Random("runs-explorer/projects")
    return _new_id(g), _new_id(g)


_PROJECT_IDS = _make_project_ids()


class _Flow:
    """A flow ready for run generation: ids, versions over time and payload scenarios."""

    def __init__(
        self, spec: _FlowSpec, ids: random.Random, g: random.Random, start_ms: int, end_ms: int
    ):
        self.spec, self.name, self.tags = spec, spec.name, spec.tags
        self.id, self.project_id = _new_id(ids), _PROJECT_IDS[spec.project]
        version_ids = [_new_id(ids) for _ in range(4)]
        nodes = _number_steps(spec.steps, itertools.count(1))
        tree = _trigger_tree(spec.trigger, nodes)
        self.since, self.versions = self._plan_versions(version_ids, tree, g, start_ms, end_ms)
        self.scenarios = tuple(_build_scenario(spec, nodes, g) for _ in range(_SCENARIOS_PER_FLOW))

    def _plan_versions(self, version_ids, tree, g, start_ms, end_ms):
        """2-4 versions, each from some moment on; the spiking flow breaks at ~40% of the range."""
        span = end_ms - start_ms
        if self.spec.spike:
            fractions = [0.1 + 0.15 * g.random(), 0.38 + 0.04 * g.random()]
        else:
            fractions = sorted(0.05 + 0.9 * g.random() for _ in range(g.randint(1, 3)))
        since = [-(1 << 62)] + [start_ms + int(fraction * span) for fraction in fractions]
        versions = [
            _Version(
                vid, {"id": vid, "flowId": self.id, "displayName": self.name, "trigger": tree}, None
            )
            for vid in version_ids[: len(since)]
        ]
        if self.spec.spike:
            versions[-1] = versions[-1]._replace(hot=self.spec.spike)
        return since, versions

    def version_at(self, ms: int) -> _Version:
        return self.versions[bisect_right(self.since, ms) - 1]


def _build_flows(g: random.Random, start_ms: int, end_ms: int) -> list[_Flow]:
    ids = random.Random("runs-explorer/catalog")  # flow and version ids are the same for any seed
    return [_Flow(spec, ids, g, start_ms, end_ms) for spec in _FLOW_SPECS]


# ---------------------------------------------------------------- when runs happen


def _intensity_buckets(start_ms: int, end_ms: int) -> tuple[list[int], list[float]]:
    """Hour buckets over the range with their cumulative share of the day/week rhythm."""
    edges, weights, t = [start_ms], [], start_ms
    while t < end_ms:
        following = min((t // _HOUR_MS + 1) * _HOUR_MS, end_ms)
        day, hour = divmod(t // _HOUR_MS, 24)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        weights.append(_HOURLY[hour] * _WEEKDAY[weekday] * (following - t))
        edges.append(following)
        t = following
    total = sum(weights)
    cumulative = [0.0, *itertools.accumulate(weight / total for weight in weights)]
    cumulative[-1] = 1.0
    return edges, cumulative


def _iter_rhythm_times(n: int, start_ms: int, end_ms: int, g: random.Random) -> Iterator[int]:
    """n ascending times following the rhythm, without sorting: successive order statistics."""
    edges, cumulative = _intensity_buckets(start_ms, end_ms)
    rnd, u, j, last = g.random, 0.0, 0, len(cumulative) - 2
    for remaining in range(n, 0, -1):
        # the smallest of `remaining` uniform draws above u
        u += (1.0 - u) * (1.0 - (1.0 - rnd()) ** (1.0 / remaining))
        while j < last and cumulative[j + 1] <= u:
            j += 1
        width = cumulative[j + 1] - cumulative[j]
        t = edges[j] + int((u - cumulative[j]) / width * (edges[j + 1] - edges[j]))
        if remaining == 1:  # the newest run is always close to `end`
            t = max(t, end_ms - 2000 - int(150_000 * rnd()))
        yield min(t, end_ms)


def _scheduled_times(schedule: str, start_ms: int, end_ms: int, g: random.Random) -> list[int]:
    days, clock = schedule.split()
    hour, minute = map(int, clock.split(":"))
    times = []
    for day in range(start_ms // _DAY_MS, end_ms // _DAY_MS + 1):
        weekday = (day + 3) % 7
        if (days == "weekdays" and weekday < 5) or (days == "mondays" and weekday == 0):
            t = day * _DAY_MS + hour * _HOUR_MS + minute * _MINUTE_MS + g.randint(3, 900)
            if start_ms <= t <= end_ms:
                times.append(t)
    return times


def _iter_arrivals(
    count: int, flows: list[_Flow], start_ms: int, end_ms: int, g: random.Random
) -> Iterator[tuple[int, _Flow]]:
    """(created, flow) for every run in ascending time: scheduled flows merged into the rest."""
    scheduled = sorted(
        (t, i)
        for i, flow in enumerate(flows)
        if flow.spec.schedule
        for t in _scheduled_times(flow.spec.schedule, start_ms, end_ms, g)
    )
    scheduled = scheduled[len(scheduled) - min(len(scheduled), count // 50) :]
    pool = [flow for flow in flows if not flow.spec.schedule]
    cumulative = list(itertools.accumulate(flow.spec.weight for flow in pool))
    total, rnd, k = cumulative[-1], g.random, 0
    for t in _iter_rhythm_times(count - len(scheduled), start_ms, end_ms, g):
        while k < len(scheduled) and scheduled[k][0] <= t:
            yield scheduled[k][0], flows[scheduled[k][1]]
            k += 1
        yield t, pool[bisect_right(cumulative, rnd() * total)]
    for t, i in scheduled[k:]:
        yield t, flows[i]


def _quota_windows(start_ms: int, end_ms: int, g: random.Random) -> list[tuple[int, int]]:
    """The last day or two of each calendar month, when the project's runs are used up."""
    windows: list[tuple[int, int]] = []
    moment = datetime.fromtimestamp(start_ms / 1000, UTC)
    year, month = moment.year, moment.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        boundary = _to_ms(datetime(year, month, 1, tzinfo=UTC))
        length = int((24 + 24 * g.random()) * _HOUR_MS)
        if boundary - length >= end_ms:
            return windows
        windows.append((boundary - length, boundary))


# ---------------------------------------------------------------- runs


class _Outcome(NamedTuple):
    status: str
    start: int | None
    finish: int | None
    updated: int
    steps: dict | None
    tasks: int
    failed: dict | None = None
    pause: dict | None = None


def _render_call(call: _ToolCall, t0: int) -> dict:
    if call.length is None:  # never returned
        return {
            "type": "TOOL_CALL",
            "toolCallType": call.kind,
            "toolName": call.name,
            "toolCallId": call.call_id,
            "status": "in-progress",
            "input": call.input,
            "startTime": _iso(t0 + call.offset),
        }
    return {
        "type": "TOOL_CALL",
        "toolCallType": call.kind,
        "toolName": call.name,
        "toolCallId": call.call_id,
        "status": "completed",
        "input": call.input,
        "startTime": _iso(t0 + call.offset),
        "endTime": _iso(t0 + call.offset + call.length),
        "output": call.output,
    }


def _render_agent(plan: _AgentPlan, t0: int, failed: bool = False) -> dict:
    blocks = plan.failed_blocks if failed else plan.blocks
    steps = [block if type(block) is dict else _render_call(block, t0) for block in blocks]
    usage = plan.failed_usage if failed else plan.usage
    output: dict[str, Any]
    if failed:
        output = {"prompt": plan.prompt, "status": "FAILED", "steps": steps}
    else:
        output = {
            "prompt": plan.prompt,
            "status": "COMPLETED",
            "steps": steps,
            "structuredOutput": plan.structured,
        }
    if usage is not None:
        output["usage"] = usage
    return output


def _render_agent_in_progress(plan: _AgentPlan, t0: int) -> dict:
    call = plan.blocks[1]
    calling = {
        "type": "TOOL_CALL",
        "toolCallType": call.kind,
        "toolName": call.name,
        "toolCallId": call.call_id,
        "status": "in-progress",
        "input": call.input,
        "startTime": _iso(t0 + call.offset),
    }
    return {"prompt": plan.prompt, "status": "IN_PROGRESS", "steps": [plan.blocks[0], calling]}


def _running_step(step: _Exec, t: int) -> dict:
    running = {"type": step.type, "status": "RUNNING", "input": step.input}
    if step.agent is not None:
        running["output"] = _render_agent_in_progress(step.agent, t)
    return running


class _RunFactory:
    """Turns (created, flow) into one engine run record; holds the run-level random state."""

    def __init__(
        self,
        g: random.Random,
        count: int,
        start_ms: int,
        end_ms: int,
        legacy_share: float,
        test_share: float,
    ):
        self.g, self.r = g, g.random
        self.end_ms, self.legacy_share, self.test_share = end_ms, legacy_share, test_share
        self.quota = _quota_windows(start_ms, end_ms, g)
        self.quota_at = 0
        self.n_queued = max(2, count // 40_000)
        self.n_active = self.n_queued + max(3, count // 8_000)
        self.fresh_after = end_ms - 30 * _MINUTE_MS
        self.stuck_before = end_ms - _DAY_MS
        self.last_run_of: dict[str, str] = {}

    def build(self, created: int, flow: _Flow, rank: int) -> dict:
        """rank: how many runs come after this one (0 for the newest)."""
        r = self.r
        scenario = flow.scenarios[int(r() * _SCENARIOS_PER_FLOW)]
        version = flow.version_at(created)
        start = created + 120 + int(1800 * r() * r())
        kind = "QUEUED" if start > self.end_ms else self._pick_kind(created, rank)
        if kind == "COMPLETE":
            outcome = self._complete(flow, scenario, version, start)
        elif kind in _HALT_NAMES:
            outcome = self._halted(kind, scenario, start)
        elif kind == "QUOTA_EXCEEDED":
            outcome = self._quota_exceeded(start)
        elif kind == "RUNNING":
            outcome = self._running(scenario, start)
        else:
            outcome = _Outcome("QUEUED", None, None, created, None, 0)
        return self._record(flow, version, created, outcome)

    def _pick_kind(self, created: int, rank: int) -> str:
        r = self.r
        if created > self.fresh_after and rank < self.n_active:
            return "QUEUED" if rank < self.n_queued else "RUNNING"
        if created < self.stuck_before and r() < _STUCK_RATE:
            return "RUNNING"
        if self._in_quota_burst(created) and r() < _QUOTA_RATE:
            return "QUOTA_EXCEEDED"
        u = r()
        return _HALT_NAMES[bisect_right(_HALT_CUM, u)] if u < _HALT_CUM[-1] else "COMPLETE"

    def _in_quota_burst(self, created: int) -> bool:
        windows = self.quota
        while self.quota_at < len(windows) and created >= windows[self.quota_at][1]:
            self.quota_at += 1
        return self.quota_at < len(windows) and created >= windows[self.quota_at][0]

    def _pick_failure(self, flow: _Flow, scenario: _Scenario, version: _Version) -> tuple:
        """(index of the failing step in the path or -1, error maker or None)."""
        r, hot = self.r, version.hot
        if hot is not None and r() < hot[1]:
            return scenario.position_of[hot[0]], hot[2]
        if not scenario.fallible or r() >= flow.spec.base_fail:
            return -1, None
        cum = scenario.fail_cum
        at = scenario.fallible[bisect_right(cum, r() * cum[-1])]
        errors = scenario.path[at].errors
        return at, errors[int(r() * len(errors))]

    # -- executing steps

    def _run_steps(self, path: tuple, n: int, t: int) -> tuple[dict, int, int, object]:
        """Runs path[:n] from time t; stops early at `end` (RUNNING) or at a pending pause.

        Returns (steps, time after them, tasks, halt) where halt is None, "RUNNING" or the
        pauseMetadata of a pause that is still pending at `end`.
        """
        r, cutoff = self.r, self.end_ms
        steps, tasks = {}, 0
        for step in path[:n]:
            name, typ, step_input, output, lo, spread, agent, pause, units, _, _, _ = step
            duration = lo + int(spread * r() * r()) if spread else lo
            if t + duration > cutoff:
                steps[name] = _running_step(step, t)
                return steps, t, tasks, "RUNNING"
            if agent is not None:
                output = _render_agent(agent, t)
            steps[name] = {
                "type": typ,
                "status": "SUCCEEDED",
                "input": step_input,
                "output": output,
                "duration": duration,
            }
            t += duration
            tasks += units
            if pause is not None:
                resume = t + self._pause_length(pause)
                if resume > cutoff:
                    steps[name] = {
                        "type": typ,
                        "status": "PAUSED",
                        "input": step_input,
                        "duration": duration,
                    }
                    return steps, t, tasks, self._pause_metadata(pause, resume)
                t = resume
        return steps, t, tasks, None

    def _pause_length(self, pause: str) -> int:
        if pause == "DELAY":
            return 2 * _DAY_MS + int(4000 * self.r())
        return 15 * _MINUTE_MS + int(3 * _DAY_MS * self.r() * self.r())

    def _pause_metadata(self, pause: str, resume: int) -> dict:
        if pause == "DELAY":
            return {"type": "DELAY", "resumeDateTime": _iso(resume)}
        return {"type": "WEBHOOK", "requestId": _new_id(self.g)}

    def _add_failed_step(self, steps: dict, step: _Exec, t: int, error: Callable) -> tuple:
        """Adds the failing step; returns (time after it, failedStep or None if cut off)."""
        if step.agent is not None:
            duration = step.agent.failed_duration
        else:
            duration = step.lo + int(step.spread * self.r() * self.r())
        if t + duration > self.end_ms:
            steps[step.name] = _running_step(step, t)
            return t, None
        message = error(self.g)
        failed = {"type": step.type, "status": "FAILED", "input": step.input, "duration": duration}
        if step.agent is not None:
            failed["output"] = _render_agent(step.agent, t, failed=True)
            message = _agent_failure_message(step.agent, message)
        failed["errorMessage"] = message
        steps[step.name] = failed
        return t + duration, {"name": step.name, "displayName": step.display, "message": message}

    # -- outcomes

    def _unfinished(self, start: int, steps: dict, t: int, tasks: int, halt) -> _Outcome:
        if halt == "RUNNING":
            return _Outcome("RUNNING", start, None, t, steps, tasks)
        return _Outcome("PAUSED", start, None, t, steps, tasks, pause=halt)

    def _finished_at(self, t: int) -> tuple[int, int]:
        """(finishTime, updated) for a run whose last step ended at t."""
        finish = min(t + 15 + int(250 * self.r()), self.end_ms)
        return finish, min(finish + 3 + int(60 * self.r()), max(finish, self.end_ms))

    def _complete(
        self, flow: _Flow, scenario: _Scenario, version: _Version, start: int
    ) -> _Outcome:
        fail_at, error = self._pick_failure(flow, scenario, version)
        path = scenario.path
        steps, t, tasks, halt = self._run_steps(path, fail_at if fail_at >= 0 else len(path), start)
        if halt is not None:
            return self._unfinished(start, steps, t, tasks, halt)
        failed = None
        if fail_at >= 0:
            t, failed = self._add_failed_step(steps, path[fail_at], t, error)
            if failed is None:
                return _Outcome("RUNNING", start, None, t, steps, tasks)
            tasks += 1
        finish, updated = self._finished_at(t)
        return _Outcome(
            "FAILED" if failed else "SUCCEEDED", start, finish, updated, steps, tasks, failed
        )

    def _halted(self, kind: str, scenario: _Scenario, start: int) -> _Outcome:
        """Runs the engine stopped (TIMEOUT, CANCELED...): partial steps, no failed step."""
        path, r = scenario.path, self.r
        ran = len(path) if kind == "LOG_SIZE_EXCEEDED" else 1 + int(r() * (len(path) - 1))
        steps, t, tasks, halt = self._run_steps(path, ran, start)
        if halt is not None:
            return self._unfinished(start, steps, t, tasks, halt)
        if kind == "TIMEOUT":
            t = max(t, start + _ENGINE_TIMEOUT_MS) + int(1500 * r())
        elif kind == "CANCELED":
            t += 1000 + int(10 * _MINUTE_MS * r() * r())
        elif kind == "MEMORY_LIMIT_EXCEEDED":
            t += 300 + int(4000 * r())
        if t > self.end_ms:
            return _Outcome("RUNNING", start, None, start, steps, tasks)
        steps_lost = kind == "LOG_SIZE_EXCEEDED" or (kind == "INTERNAL_ERROR" and r() < 0.5)
        finish, updated = self._finished_at(t)
        return _Outcome(kind, start, finish, updated, None if steps_lost else steps, tasks)

    def _quota_exceeded(self, start: int) -> _Outcome:
        finish, updated = self._finished_at(start)
        return _Outcome("QUOTA_EXCEEDED", start, finish, updated, None if self.r() < 0.5 else {}, 0)

    def _running(self, scenario: _Scenario, start: int) -> _Outcome:
        """Still running: near `end`, or stuck for days after its worker died."""
        path = scenario.path
        at = 1 + int(self.r() * (len(path) - 1))
        steps, t, tasks, halt = self._run_steps(path, at, start)
        if halt is None:
            steps[path[at].name] = _running_step(path[at], t)
            halt = "RUNNING"
        return self._unfinished(start, steps, t, tasks, halt)

    # -- the record

    def _archived_at(self, finish: int) -> int | None:
        archived = finish + 10 * _MINUTE_MS + int(7 * _DAY_MS * self.r())
        return archived if archived <= self.end_ms else None

    def _parent_run_id(self, flow: _Flow, run_id: str) -> str | None:
        if flow.name in _PARENT_FLOWS:
            self.last_run_of[flow.name] = run_id
        if flow.spec.parent is None:
            return None
        return self.last_run_of.get(flow.spec.parent) or _new_id(self.g)

    def _record(self, flow: _Flow, version: _Version, created: int, o: _Outcome) -> dict:
        r = self.r
        run_id = _new_id(self.g)
        steps, updated, archived = o.steps, o.updated, None
        if o.finish is not None:
            if steps and r() < _PURGED_RATE:
                steps = None
            if r() < _ARCHIVED_RATE:
                archived = self._archived_at(o.finish)
                updated = max(updated, archived or 0)
        tags = list(flow.tags) if flow.tags and r() < _TAGGED_RATE else []
        environment = "TESTING" if r() < self.test_share else "PRODUCTION"
        parent = self._parent_run_id(flow, run_id)
        if r() < self.legacy_share:
            return _legacy_record(
                run_id, flow, version, created, updated, environment, tags, parent, o, steps
            )
        record: dict[str, Any] = {
            "id": run_id,
            "created": _iso(created),
            "updated": _iso(updated),
            "projectId": flow.project_id,
            "flowId": flow.id,
            "flowVersionId": version.id,
            "flowVersion": version.record,
            "environment": environment,
            "status": o.status,
            "tags": tags,
            "archivedAt": None if archived is None else _iso(archived),
            "startTime": None if o.start is None else _iso(o.start),
            "finishTime": None if o.finish is None else _iso(o.finish),
            "failedStep": o.failed,
        }
        if o.pause is not None:
            record["pauseMetadata"] = o.pause
        if parent is not None:
            record["parentRunId"] = parent
        record["stepsCount"] = o.tasks
        record["steps"] = steps
        return record


def _legacy_record(
    run_id, flow, version, created, updated, environment, tags, parent, o, steps
) -> dict:
    """The older engine's shape: flowDisplayName, duration, tasks and failedStepName."""
    record = {
        "id": run_id,
        "created": _iso(created),
        "updated": _iso(updated),
        "projectId": flow.project_id,
        "flowId": flow.id,
        "flowVersionId": version.id,
        "flowDisplayName": flow.name,
        "environment": environment,
        "status": o.status,
        "tags": tags,
        "startTime": None if o.start is None else _iso(o.start),
        "finishTime": None if o.finish is None else _iso(o.finish),
    }
    if o.finish is not None:
        record["duration"] = o.finish - o.start
    record["tasks"] = o.tasks
    if o.failed is not None:
        record["failedStepName"] = o.failed["name"]
    if o.pause is not None:
        record["pauseMetadata"] = o.pause
    if parent is not None:
        record["parentRunId"] = parent
    record["steps"] = steps
    return record


# ---------------------------------------------------------------- public API


def _check_arguments(count: int, days: float, legacy_share: float, test_share: float) -> None:
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if not days > 0:
        raise ValueError(f"days must be > 0, got {days}")
    for name, share in (("legacy_share", legacy_share), ("test_share", test_share)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1, got {share}")


def generate_runs(
    count: int,
    days: float = 30,
    seed: int = 7,
    end: datetime | None = None,
    legacy_share: float = 0.0,
    test_share: float = 0.01,
) -> Iterator[dict]:
    """Yields `count` engine-shaped runs created over the `days` before `end`, oldest first.

    `end` defaults to now (UTC, whole seconds); a naive datetime is read as UTC. The same
    arguments always give the same runs. `legacy_share` of the runs use the older engine's
    fields, `test_share` are TESTING runs. Runs share read-only objects between them: the
    flowVersion dict, step inputs/outputs, loop outputs and agent blocks; copy before mutating.
    """
    _check_arguments(count, days, legacy_share, test_share)
    end = end or datetime.now(UTC).replace(microsecond=0)
    end_ms = _to_ms(end)
    return _iter_runs(count, seed, end_ms - round(days * _DAY_MS), end_ms, legacy_share, test_share)


def _iter_runs(
    count: int, seed: int, start_ms: int, end_ms: int, legacy_share: float, test_share: float
) -> Iterator[dict]:
    if count == 0:
        return
    g = random.Random(seed)
    flows = _build_flows(g, start_ms, end_ms)
    factory = _RunFactory(g, count, start_ms, end_ms, legacy_share, test_share)
    arrivals = _iter_arrivals(count, flows, start_ms, end_ms, g)
    for rank, (created, flow) in zip(range(count - 1, -1, -1), arrivals, strict=False):
        yield factory.build(created, flow, rank)


def write_jsonl(path, runs: Iterable[dict], gzip: bool | None = None) -> int:
    """Writes one run per line (gzip-compressed when the path ends with .gz); returns the count.

    orjson writes the same compact UTF-8 JSON as the standard library, about five times as fast:
    encoding, not generating, was most of the time of `sample`."""
    path = os.fspath(path)
    compress = path.endswith(".gz") if gzip is None else gzip
    written = 0
    with _gzip.open(path, "wb", compresslevel=6) if compress else open(path, "wb") as out:
        for run in runs:
            out.write(orjson.dumps(run, option=orjson.OPT_APPEND_NEWLINE))
            written += 1
    return written
