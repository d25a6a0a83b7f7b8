"""The credential shapes masking hides wherever they appear in a text, taken from maintained secret
scanners instead of being invented here.

runs_store.services.masking replaces, in every text it masks, what each pattern's `secret` group
matched
by MASK and keeps the rest of the match readable: an auth scheme word, a URL's scheme, user and
host, a PEM block's BEGIN and END lines. A pattern also lists markers, plain substrings one of
which every match contains, so a text without any is never scanned (most texts have none).

The shapes come from two scanners, whose rules are read at these commits:
  gitleaks: github.com/gitleaks/gitleaks, config/gitleaks.toml (commit b58d3f1),
      MIT License, Copyright (c) 2019 Zachary Rice.
  detect-secrets: github.com/Yelp/detect-secrets, detect_secrets/plugins/*.py (commit 5e14193),
      Apache License 2.0, by Yelp, Inc.; its private_key.py's labels come in part from
      pre-commit-hooks (MIT, Copyright (c) 2014 pre-commit dev team: Anthony Sottile, Ken Struys).
Scanners look for secrets committed to files and stay quiet on near-misses; masking runs on text
about to be shown, where hiding a bit too much is the lesser harm. So, as each pattern notes:
  - gitleaks' closing delimiter group (`(?:[\\x60'"\\s;]|\\\\[nr]|$)`) is dropped, because a token
    followed by `,` `)` `&` must be masked too; an upper bound on a token's length is dropped so
    a longer one is not half shown; exact lengths become a look-ahead that no more such
    characters follow;
  - case-insensitive prefixes are made case-sensitive where the real tokens are (`npm_`, PEM
    labels), so that the markers, case-sensitive substrings, find every match;
  - a value may be written JSON-escaped (`\\n`, `\\/`, `\\"`) in JSON text that is not parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SecretPattern:
    rule: str  # a short name, for tests and messages
    regex: re.Pattern  # what its `secret` group matches is masked, the rest kept
    markers: tuple[str, ...]  # every match contains one of these
    source: str  # where the pattern comes from and how it differs
    # its markers are in most texts that hold none (every URL has "://"): a search, quick for
    # this pattern, tells better whether a text holds one
    search_to_confirm: bool = False


def _pattern(
    rule: str, regex: str, markers: tuple[str, ...], source: str, search_to_confirm: bool = False
) -> SecretPattern:
    return SecretPattern(rule, re.compile(regex), markers, source, search_to_confirm)


# A PEM private key's armour line: gitleaks' private-key rule, which is case-insensitive; PEM
# labels are upper case (RFC 7468), and keeping them so keeps the marker exact.
_PEM_LABEL = r"[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
# a line break, real or JSON-escaped (once in JSON text, twice in JSON that a string holds in it):
# the body must not end inside an escape
_LINE_BREAK = r"(?:\r?\n|\\+r\\+n|\\+n)"

PRIVATE_KEY = _pattern(
    "private-key",
    # the body, lazily, up to the END line; without one (a text cut short), up to a closing
    # quote or the end, never past a quote (PEM bodies have none, JSON strings end at one) nor
    # into the backslashes that escape one
    rf"-----BEGIN{_PEM_LABEL}{_LINE_BREAK}?(?P<secret>(?:[^\"\\]|\\+(?![\"\\]))+?)"
    rf"(?={_LINE_BREAK}?-----END{_PEM_LABEL}|\\*\"|\Z)",
    ("-----BEGIN",),
    "gitleaks rule private-key (MIT); detect-secrets plugins/private_key.py (Apache-2.0) for the "
    "labels (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP ... BLOCK, plain). Differs: case-sensitive; "
    "the body is masked (BEGIN/END lines kept) and a body without an END line (cut off) too.",
)

AUTH_SCHEME = _pattern(
    "auth-scheme",
    # after an auth scheme, anything but a plain word ("Token expired", "Basic information")
    r"\b(?:Bearer|Basic|Token)\s+(?P<secret>(?![A-Za-z][a-z]*(?![A-Za-z0-9._~+/=\-]))"
    r"[A-Za-z0-9._~+/=\-]{6,})",
    ("Bearer", "Basic", "Token"),
    "runs_store's own (an Authorization header's credentials, RFC 7235 token68); cf. gitleaks "
    "rule curl-auth-header (MIT).",
)

OPENAI_STYLE_KEY = _pattern(
    "sk-key",
    r"(?P<secret>\bsk-(?:[A-Za-z]+-)?[A-Za-z0-9_\-]{16,})",
    ("sk-",),
    "runs_store's own, broader than gitleaks rules openai-api-key / anthropic-api-key (MIT) and "
    "detect-secrets plugins/openai.py (Apache-2.0), which also require the T3BlbkFJ or AA parts.",
)

JWT = _pattern(
    "jwt",
    r"(?P<secret>\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*)",
    ("eyJ",),
    "runs_store's own; cf. gitleaks rule jwt (MIT), detect-secrets plugins/jwt.py (Apache-2.0).",
)

SLACK_TOKEN = _pattern(
    "slack-token",
    r"(?P<secret>\bxox[abposr]-[A-Za-z0-9\-]{10,})",
    ("xox",),
    "runs_store's own; cf. detect-secrets plugins/slack.py (Apache-2.0), gitleaks rules "
    "slack-bot-token, slack-user-token, slack-legacy-* (MIT).",
)

GITHUB_TOKEN = _pattern(
    "github-token",
    r"(?P<secret>\bgh[pousr]_[A-Za-z0-9]{20,})",
    ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "gitleaks rules github-pat, github-oauth, github-app-token, github-refresh-token (MIT); "
    "detect-secrets plugins/github_token.py (Apache-2.0). Differs: 20+ characters, not 36.",
)

AWS_ACCESS_KEY = _pattern(
    "aws-access-key",
    r"(?P<secret>\bAKIA[0-9A-Z]{16}\b)",
    ("AKIA",),
    "gitleaks rule aws-access-token (MIT), detect-secrets plugins/aws.py (Apache-2.0); only the "
    "AKIA (long-term key) prefix.",
)

STRIPE_KEY = _pattern(
    "stripe-key",
    r"(?P<secret>\b(?:sk|rk)_(?:test|live|prod)_[a-zA-Z0-9]{10,})",
    ("k_live_", "k_test_", "k_prod_"),
    "gitleaks rule stripe-access-token (MIT): (sk|rk)_(test|live|prod)_ + 10 or more; cf. "
    "detect-secrets plugins/stripe.py (Apache-2.0). Differs: no upper bound, no delimiter.",
)

GOOGLE_API_KEY = _pattern(
    "gcp-api-key",
    r"(?P<secret>\bAIza[\w-]{35})(?![\w-])",
    ("AIza",),
    "gitleaks rule gcp-api-key (MIT): AIza + 35. Differs: the delimiter is a look-ahead.",
)

NPM_TOKEN = _pattern(
    "npm-access-token",
    r"(?P<secret>\bnpm_[A-Za-z0-9]{36})(?!\w)",
    ("npm_",),
    "gitleaks rule npm-access-token (MIT): npm_ + 36. Differs: case-sensitive npm_ prefix, the "
    "delimiter is a look-ahead.",
)

NPMRC_AUTH = _pattern(
    "npmrc-auth",
    # //registry.npmjs.org/:_authToken=..., also _auth= (base64 user:password) and _password=;
    # the slash may be JSON-escaped (\/:_authToken=)
    r"/:_(?:authToken|auth|password)=[ \t]*(?P<secret>[^\s\"'\\]+)",
    ("/:_auth", "/:_password"),
    "detect-secrets plugins/npm.py (Apache-2.0): //host/:_authToken=. Differs: any value is "
    "masked (not only npm_ or UUID-shaped ones), and _auth= / _password= lines too.",
)

SLACK_WEBHOOK = _pattern(
    "slack-webhook-url",
    r"hooks\.slack\.com(?:/|\\/)(?:services|workflows|triggers)(?:/|\\/)"
    r"(?P<secret>(?:[A-Za-z0-9_+]|\\?/)+)",
    ("hooks.slack.com",),
    "gitleaks rule slack-webhook-url (MIT), detect-secrets plugins/slack.py (Apache-2.0). "
    "Differs: any path length (gitleaks wants 43-56), escaped slashes; the host stays readable.",
)

URL_PASSWORD = _pattern(
    "url-password",
    # scheme://user:password@host, also with an empty user (redis://:password@host) and with
    # JSON-escaped slashes; the scheme, user and host stay readable. The @ is matched: a preview
    # cut just before it would show a password no longer recognised.
    r":(?://|\\/\\/)[^:/?#@\s\"'\\]*:(?P<secret>[^/?#@\s\"'\\]+)@",
    ("://", ":\\/\\/"),
    "detect-secrets plugins/basic_auth.py (Apache-2.0): ://user:password@. Differs: the "
    "password may hold RFC 3986 sub-delimiters (!$&'()*+,;=) except quotes, the user may be "
    "empty.",
    search_to_confirm=True,
)  # most URLs have no password: searching for "://..." is quick

# In the order masking applies them: a PEM block before the tokens its body could hold.
VALUE_PATTERNS: tuple[SecretPattern, ...] = (
    PRIVATE_KEY,
    AUTH_SCHEME,
    OPENAI_STYLE_KEY,
    JWT,
    SLACK_TOKEN,
    GITHUB_TOKEN,
    AWS_ACCESS_KEY,
    STRIPE_KEY,
    GOOGLE_API_KEY,
    NPMRC_AUTH,
    NPM_TOKEN,
    SLACK_WEBHOOK,
    URL_PASSWORD,
)
