"""The secret shapes masking hides wherever a value leaves the store, and their near-misses.

Each shape is a realistic text holding a secret: the secret must not survive masking (MASK takes
its place) while what is not secret stays readable. Every shape goes through each way text is
masked: a parsed payload (mask_secrets), plain text (mask_text), JSON text that is not parsed
(mask_json_text, the shape in a string and in JSON that a string holds, escaped twice) and error
messages (messages_as_shown). A near-miss goes through the same ways and comes out unchanged.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import pytest

from factories import engine_run, exported_rows, simple_run, write_jsonl
from run_records import build_run_db
from runs_store.ingest.pipeline import ingest_paths
from runs_store.services.export import write_export
from runs_store.services.masking import (
    MASK,
    MAX_DEPTH,
    MaskTally,
    mask_json_preview,
    mask_json_text,
    mask_secrets,
    mask_text,
    messages_as_shown,
    preview_end,
)
from runs_store.services.run_detail import load_run, make_error
from runs_store.services.secret_patterns import VALUE_PATTERNS
from runs_store.store.database import open_db


@dataclass(frozen=True)
class Shape:
    text: str  # as recorded
    secret: str  # must not be shown
    kept: tuple[str, ...] = ()  # must still be shown


PEM_BODY = (
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0\n"
    "/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMgh"
)


def pem(label: str, newline: str = "\n") -> str:
    return (
        f"-----BEGIN {label}-----{newline}{PEM_BODY.replace(chr(10), newline)}{newline}"
        f"-----END {label}-----{newline}"
    )


PEM_LINE = PEM_BODY.splitlines()[1]  # a line of the body, which must not be shown

SHAPES = {
    # 1. Stripe secret and restricted keys, live, test and prod
    "stripe-live": Shape(
        "Stripe: invalid key sk_live_51HxQ2abcDEF4567ghiJKL890mno, check it",
        "51HxQ2abcDEF4567ghiJKL890mno",
        ("Stripe: invalid key ", ", check it"),
    ),
    "stripe-restricted": Shape(
        "restricted key rk_live_51HxQ2abcDEF4567ghiJKL890mno",
        "51HxQ2abcDEF4567ghiJKL890mno",
        ("restricted key ",),
    ),
    "stripe-test": Shape(
        "using sk_test_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc", ("using ",)
    ),
    "stripe-prod": Shape("(rk_prod_Zq81wPxTy7Lm2Nc4)", "Zq81wPxTy7Lm2Nc4", ("(", ")")),
    # 2. Google API keys
    "google-api-key": Shape(
        "Geocoding denied for AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe today",
        "SyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
        ("Geocoding denied for ", " today"),
    ),
    # 3. passwords in URLs and DSNs: only the password
    "postgres-dsn": Shape(
        "connect failed: postgres://app_user:Pa55w0rd!@db.internal:5432/shop",
        "Pa55w0rd!",
        ("postgres://app_user:", "@db.internal:5432/shop"),
    ),
    "https-user-password": Shape(
        "GET https://ana:s3cr3t-pw@api.example.com/v1/items failed",
        "s3cr3t-pw",
        ("https://ana:", "@api.example.com/v1/items failed"),
    ),
    "mongodb-srv": Shape(
        "MongoServerSelectionError: mongodb+srv://admin:Xk9pL2mN@c0.mongodb.net/",
        "Xk9pL2mN",
        ("mongodb+srv://admin:", "@c0.mongodb.net/"),
    ),
    "redis-empty-user": Shape(
        "redis://:hunter2-redis@cache:6379/0", "hunter2-redis", ("redis://:", "@cache:6379/0")
    ),
    # 4. PEM private keys: the body, BEGIN and END lines kept
    "pem-rsa": Shape(
        "TLS setup failed:\n" + pem("RSA PRIVATE KEY"),
        PEM_LINE,
        ("-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"),
    ),
    "pem-openssh": Shape(
        pem("OPENSSH PRIVATE KEY"),
        PEM_LINE,
        ("-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY"),
    ),
    "pem-ec": Shape(pem("EC PRIVATE KEY", "\r\n"), PEM_LINE, ("-----BEGIN EC PRIVATE KEY-----",)),
    "pem-dsa": Shape(pem("DSA PRIVATE KEY"), PEM_LINE, ("-----END DSA PRIVATE KEY-----",)),
    "pem-encrypted": Shape(
        pem("ENCRYPTED PRIVATE KEY"), PEM_LINE, ("-----BEGIN ENCRYPTED PRIVATE KEY-----",)
    ),
    "pem-plain": Shape("key: " + pem("PRIVATE KEY"), PEM_LINE, ("-----END PRIVATE KEY-----",)),
    # JSON text that a message holds without being JSON as a whole: escaped line breaks
    "pem-json-escaped": Shape(
        'Bad request body: {"key": "' + pem("PRIVATE KEY", "\\n") + '"}',
        PEM_LINE,
        ("-----BEGIN PRIVATE KEY-----\\n", '\\n-----END PRIVATE KEY-----\\n"}'),
    ),
    "pem-cut-off": Shape(
        "key was -----BEGIN RSA PRIVATE KEY-----\n" + PEM_BODY,
        PEM_LINE,
        ("key was -----BEGIN RSA PRIVATE KEY-----",),
    ),
    # 5. Slack webhooks
    "slack-webhook": Shape(
        "POST https://hooks.slack.com/services/T024BE7LD/B01ABCD2EFG/aBcDeFgHiJkLmNoPqRsTuVwX "
        "returned 404",
        "aBcDeFgHiJkLmNoPqRsTuVwX",
        ("https://hooks.slack.com/services/", " returned 404"),
    ),
    "slack-workflow": Shape(
        "https://hooks.slack.com/workflows/T024BE7LD/A04ABCDEF/412345678901234567/AbCdEfGhIjKlMnOp",
        "AbCdEfGhIjKlMnOp",
        ("https://hooks.slack.com/workflows/",),
    ),
    "slack-trigger": Shape(
        "https://hooks.slack.com/triggers/T024BE7LD/4123456789012/0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef",
        ("https://hooks.slack.com/triggers/",),
    ),
    # 6. npm tokens
    "npmrc-auth-token": Shape(
        "//registry.npmjs.org/:_authToken=npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        ("//registry.npmjs.org/:_authToken=",),
    ),
    "npmrc-uuid-token": Shape(
        "registry=https://npm.example.com/\n//npm.example.com/:_authToken=0f4e2c1a-8b7d-4e6f-9a3b",
        "0f4e2c1a-8b7d-4e6f-9a3b",
        ("registry=https://npm.example.com/",),
    ),
    "npm-token": Shape(
        "npm publish failed with npm_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        ("npm publish failed with ",),
    ),
    # 8. raw header text
    "cookie-header": Shape("Cookie: session=abc123def; theme=dark", "abc123def", ("Cookie: ",)),
    "raw-request": Shape(
        "GET / HTTP/1.1\r\nHost: api.example.com\r\nx-api-key: abc123XYZ\r\nAccept: */*\r\n",
        "abc123XYZ",
        ("Host: api.example.com\r\nx-api-key: ", "\r\nAccept: */*\r\n"),
    ),
    "authorization-basic": Shape(
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "dXNlcjpwYXNzd29yZA==",
        ("Authorization: Basic ",),
    ),
    "authorization-after-space": Shape(
        "401 for Authorization: Bearer abc.def-ghi, retrying",
        "abc.def-ghi",
        ("401 for Authorization: Bearer ", ", retrying"),
    ),
    "proxy-authorization": Shape(
        "407 from proxy; sent Proxy-Authorization: Negotiate YIIBhwYGKwYB",
        "YIIBhwYGKwYB",
        ("407 from proxy; sent Proxy-Authorization: ",),
    ),
    "set-cookie": Shape(
        "HTTP/1.1 302 Found\nSet-Cookie: sid=s3cr3t-77; Path=/\nLocation: /home",
        "s3cr3t-77",
        ("Set-Cookie: ", "\nLocation: /home"),
    ),
    "x-auth-token": Shape(
        "retried with X-Auth-Token: 7f3a9c2e", "7f3a9c2e", ("retried with X-Auth-Token: ",)
    ),
    "secret-named-line": Shape(
        "user: ana\npassword: hunter2-Pa55\nhost: db",
        "hunter2-Pa55",
        ("user: ana\npassword: ", "\nhost: db"),
    ),
}

NEAR_MISSES = [
    "sk_live_",
    "sk_live_short",
    "the sk_live_ prefix marks live keys",
    "AIzaShort-key",
    "https://example.com/@ana",
    "mailto:ana@example.com",
    "https://ana@example.com/profile",
    "https://example.com:8443/path",
    "Email ana@example.com about https://example.com",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkq\n-----END CERTIFICATE-----",
    "-----BEGIN RSA PRIVATE KEY-----",
    "Alerts go to hooks.slack.com, see the runbook",
    "https://hooks.slack.com/",
    "https://api.slack.com/messaging/webhooks",
    "npm_config_registry=https://registry.npmjs.org/",
    "run npm_install first",
    "Authorization failed",
    "Token expired for this user",
    "cookie policy: accepted",
    "Set-Cookie header missing from the response",
    "Missing Authorization header",
    "Authorization:",
    "Accept: application/json\nHost: api.example.com",
    'error: password authentication failed for user "analytics"',
    "TypeError: Cannot read properties of undefined (reading 'token')",
]


def shapes():
    return pytest.mark.parametrize("name", sorted(SHAPES))


def assert_hidden(shown: str, shape: Shape) -> None:
    assert shape.secret not in shown
    assert MASK in shown
    for kept in shape.kept:
        assert kept in shown, kept


# ------------------------------------------------------------------ each shape, each way


@shapes()
def test_plain_text_hides_the_secret_and_keeps_the_rest(name):
    shape = SHAPES[name]
    tally = MaskTally()
    shown = tally.text(shape.text)
    assert_hidden(shown, shape)
    assert tally.hits == shown.count(MASK)  # each value masked once, by one rule


@shapes()
def test_an_error_message_hides_the_secret(name):
    shape = SHAPES[name]
    assert_hidden(messages_as_shown([shape.text], mask=True)[0], shape)
    assert messages_as_shown([shape.text], mask=False) == [shape.text]


@shapes()
def test_a_parsed_payload_hides_the_secret(name):
    shape = SHAPES[name]
    tally = MaskTally()
    masked = tally.value({"note": shape.text, "list": [shape.text]})
    assert_hidden(masked["note"], shape)
    assert_hidden(masked["list"][0], shape)
    assert tally.hits >= 2


@shapes()
def test_json_text_hides_the_secret_and_stays_json(name):
    shape = SHAPES[name]
    masked = mask_json_text(json.dumps({"note": shape.text}))
    assert_hidden(json.loads(masked)["note"], shape)


@shapes()
def test_json_that_a_string_holds_hides_the_secret_escaped_twice(name):
    shape = SHAPES[name]
    body = json.dumps({"body": json.dumps({"note": shape.text})})
    assert_hidden(json.loads(json.loads(mask_json_text(body))["body"])["note"], shape)
    assert_hidden(json.loads(mask_secrets(json.loads(body))["body"])["note"], shape)


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_a_near_miss_is_shown_as_recorded_every_way(text):
    assert mask_text(text) == text
    assert messages_as_shown([text], mask=True) == [text]
    assert mask_secrets({"note": text, "list": [text]}) == {"note": text, "list": [text]}
    as_json = json.dumps({"note": text})
    assert mask_json_text(as_json) == as_json
    held = json.dumps({"body": as_json})
    assert mask_json_text(held) == held


def test_every_value_pattern_is_exercised_by_a_shape():
    """A new pattern comes with a shape here (its markers are what lets texts skip it)."""
    found = {
        pattern.rule
        for pattern in VALUE_PATTERNS
        for shape in SHAPES.values()
        if pattern.regex.search(shape.text)
    }
    old_shapes = {"auth-scheme", "sk-key", "jwt", "slack-token", "github-token", "aws-access-key"}
    assert {pattern.rule for pattern in VALUE_PATTERNS} - old_shapes <= found
    for pattern in VALUE_PATTERNS:
        assert pattern.source and pattern.markers


# ------------------------------------------------------------------ the decisions, one by one


def test_a_url_shows_its_scheme_user_and_host_only_the_password_is_masked():
    assert mask_text("postgres://user:PASSWORD@host/db") == f"postgres://user:{MASK}@host/db"
    escaped = "https:\\/\\/ana:pw-77@example.com\\/x"  # JSON with escaped slashes (PHP)
    assert mask_json_text(escaped) == f"https:\\/\\/ana:{MASK}@example.com\\/x"


def test_a_pem_block_keeps_its_armour_lines_and_line_breaks():
    shown = mask_text(pem("RSA PRIVATE KEY"))
    assert shown == f"-----BEGIN RSA PRIVATE KEY-----\n{MASK}\n-----END RSA PRIVATE KEY-----\n"
    two = mask_text(pem("EC PRIVATE KEY") + "and\n" + pem("PRIVATE KEY"))
    assert two.count(MASK) == 2 and "and\n-----BEGIN PRIVATE KEY-----" in two


def test_a_header_keeps_its_auth_scheme_and_what_follows_its_credentials():
    tally = MaskTally()
    shown = tally.text("HTTP/1.1 401\n\tAuthorization: Bearer abc123XYZ\n Cookie: sid=1")
    assert shown == f"HTTP/1.1 401\n\tAuthorization: Bearer {MASK}\n Cookie: {MASK}"
    assert tally.hits == 2
    assert (
        mask_text("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln was refused")
        == f"Authorization: Bearer {MASK} was refused"
    )
    assert mask_text("Cookie: a=1; b=2 (2 cookies)") == f"Cookie: {MASK}"  # the rest of the line
    assert mask_text('He sent "Cookie: sid=9" twice') == f'He sent "Cookie: {MASK}" twice'


def test_a_header_value_in_json_text_ends_at_an_escaped_line_break_or_the_strings_end():
    text = json.dumps({"raw": "x-api-key: abc123\r\nHost: h", "h": "Cookie: sid=1"})
    assert json.loads(mask_json_text(text)) == {
        "raw": f"x-api-key: {MASK}\r\nHost: h",
        "h": f"Cookie: {MASK}",
    }


@pytest.mark.parametrize(
    "text",
    [
        "Authorization failed",
        "Token expired",
        "cookie policy: accepted",
        "Our cookie policy: accepted",
        "Requester: Email is not properly formatted",
    ],
)
def test_header_like_prose_is_kept(text):
    """Only `Name:` with no space before the colon is a header; a secret-named one at a line
    start, or a well-known credential header (Authorization, Cookie, ...) after any space."""
    assert mask_text(text) == text


HEADER_PAIRS = [["Authorization", "Bearer x"], ["X-Api-Key", "abc"], ["Accept", "json"]]


def test_headers_as_name_value_pairs_mask_the_values_of_secret_names():
    tally = MaskTally()
    masked = tally.value({"headers": HEADER_PAIRS})
    assert masked["headers"] == [["Authorization", MASK], ["X-Api-Key", MASK], ["Accept", "json"]]
    assert tally.hits == 2
    as_json = json.dumps({"headers": HEADER_PAIRS})
    assert json.loads(mask_json_text(as_json)) == masked
    held = json.dumps({"body": as_json})
    assert json.loads(json.loads(mask_json_text(held))["body"]) == masked
    assert messages_as_shown([as_json], mask=True) == [json.dumps(masked, ensure_ascii=False)]


@pytest.mark.parametrize(
    "value",
    [
        ["token", "limit", "extra"],  # not a pair
        [["Accept", "json"], ["X-Request-Id", "r-1"]],
        ["X-Api-Key", None],
        [1, "x"],
    ],
)
def test_lists_that_are_not_secret_pairs_are_kept(value):
    assert mask_secrets({"v": value}) == {"v": value}
    assert json.loads(mask_json_text(json.dumps({"v": value}))) == {"v": value}
    # an empty value is kept when parsed (as a secret key's is), masked in JSON text (ditto)
    assert mask_secrets({"v": ["X-Api-Key", ""]}) == {"v": ["X-Api-Key", ""]}


def test_a_pair_cut_by_the_end_of_a_preview_is_masked():
    assert mask_json_preview('[["X-Api-Key", "abc12') == f'[["X-Api-Key", "{MASK}"'
    assert mask_json_preview('[[ "Accept", "json') == '[[ "Accept", "json'


@pytest.mark.parametrize("name", ["stripe-live", "google-api-key", "postgres-dsn", "npm-token"])
def test_a_preview_is_not_cut_inside_a_new_shape(name):
    text = "x" * 100 + " " + SHAPES[name].text + " " + "y" * 100
    start = text.index(SHAPES[name].secret)
    for cut in range(start, start + len(SHAPES[name].secret) + 2):
        shown = mask_json_preview(text[: preview_end(text, cut)])
        assert SHAPES[name].secret[:3] not in shown, cut


# ------------------------------------------------------------------ deep values


def nested(depth: int, leaf, kind: str = "dict"):
    value = leaf
    for _ in range(depth):
        value = {"a": value} if kind == "dict" else [value]
    return value


def leaf_of(value, kind: str = "dict"):
    """(the value at the bottom of a nesting, how many levels down it is), without recursion."""
    depth = 0
    while isinstance(value, dict if kind == "dict" else list) and len(value) == 1:
        value = value["a"] if kind == "dict" else value[0]
        depth += 1
    return value, depth


@pytest.mark.parametrize("kind", ["dict", "list"])
def test_a_value_nested_to_the_limit_is_walked_as_usual(kind):
    # MAX_DEPTH levels of nesting around the texts: they are at depth MAX_DEPTH
    leaf = {"note": "Bearer abc123XYZ789def", "user": "ana"}
    tally = MaskTally()
    found, depth = leaf_of(tally.value(nested(MAX_DEPTH - 1, leaf, kind)), kind)
    assert depth == MAX_DEPTH - 1
    assert found == {"note": f"Bearer {MASK}", "user": "ana"} and tally.hits == 1


@pytest.mark.parametrize("kind", ["dict", "list"])
def test_what_lies_deeper_than_the_limit_is_masked_whole_and_counted(kind):
    secret = "sk_live_51HxQ2abcDEF4567ghiJKL890mno"
    tally = MaskTally()
    found, depth = leaf_of(tally.value(nested(10_000, {"plain": secret}, kind)), kind)
    assert found == MASK and depth == MAX_DEPTH + 1 and tally.hits == 1
    found, _ = leaf_of(mask_secrets(nested(10_000, secret, kind)), kind)
    assert found == MASK


# ------------------------------------------------------------------ where values leave the store

PASSWORD_MESSAGE = 'Request failed: {"password": "hunter2", "user": "ana"}'


def test_a_steps_error_headline_masks_a_json_pair_in_a_message_that_is_not_json():
    error = make_error(PASSWORD_MESSAGE, mask=True, limit=4096)
    assert "hunter2" not in error.headline
    assert error.headline == f'Request failed: {{"password": "{MASK}", "user": "ana"}}'
    assert "hunter2" not in json.dumps(error.detail.value)
    assert make_error(PASSWORD_MESSAGE, mask=False, limit=4096).headline == PASSWORD_MESSAGE


@pytest.fixture(scope="module")
def message_db(tmp_path_factory):
    failing = {
        "trigger": {"type": "EMPTY", "status": "SUCCEEDED", "input": {}, "output": {}},
        "step_1": {
            "type": "CODE",
            "status": "FAILED",
            "duration": 5,
            "input": {},
            "errorMessage": PASSWORD_MESSAGE,
        },
    }
    failed_step = {"name": "step_1", "displayName": "Call the API", "message": PASSWORD_MESSAGE}
    records = [
        engine_run("pw-step", flowId="fL0w-pw", steps=failing, failedStep=failed_step),
        engine_run("pw-purged", flowId="fL0w-pw", steps=None, failedStep=failed_step),
    ]
    return build_run_db(tmp_path_factory.mktemp("shapes") / "runs.duckdb", records)


def test_the_run_page_masks_a_json_pair_in_error_messages(message_db):
    with open_db(message_db, read_only=True) as con:
        step_run = load_run(con, "pw-step", mask=True)
        purged = load_run(con, "pw-purged", mask=True)
        plain = load_run(con, "pw-purged", mask=False)
    headline = step_run.find_step("step_1").error.headline
    assert "hunter2" not in headline and MASK in headline
    assert "hunter2" not in purged.error_message and '"user": "ana"' in purged.error_message
    assert purged.masked_count == 1
    assert plain.error_message == PASSWORD_MESSAGE and plain.masked_count == 0


EXPORTED_MESSAGES = {
    "pem-run": "TLS setup failed: " + pem("RSA PRIVATE KEY"),
    "dsn-run": "connect ECONNREFUSED postgres://app_user:Pa55w0rd!@db.internal:5432/shop",
}


def exported_errors(con, fmt: str) -> dict[str, str]:
    out = io.BytesIO()
    write_export(con, out, fmt, mask=True)
    return {row["id"]: row["error_message"] for row in exported_rows(out.getvalue(), fmt)}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_exports_mask_private_keys_and_dsn_passwords_in_error_messages(tmp_path, fmt):
    records = [
        simple_run(
            run_id,
            status="FAILED",
            failedStep={"name": "step_1", "displayName": "Connect", "message": message},
        )
        for run_id, message in EXPORTED_MESSAGES.items()
    ]
    db = tmp_path / "runs.duckdb"
    ingest_paths(db, [write_jsonl(tmp_path / "runs.jsonl", records)])
    with open_db(db, read_only=True) as con:
        errors = exported_errors(con, fmt)
    assert PEM_LINE not in errors["pem-run"] and MASK in errors["pem-run"]
    assert "-----BEGIN RSA PRIVATE KEY-----" in errors["pem-run"]
    assert errors["dsn-run"] == (
        "connect ECONNREFUSED postgres://app_user:" + MASK + "@db.internal:5432/shop"
    )
