"""Blank out secrets in text that leaves the bot (log lines quoted in Slack, JSON results).

Log lines carry what clients sent: query strings with passwords and tokens, Authorization
and Cookie headers, credentials in upstream URLs. Everything quoted from a server passes
through ``redact`` first. The patterns err on the side of blanking too much.
"""

from __future__ import annotations

import re

MASK = "[REDACTED]"

# Names whose value is a secret, in key=value, key: value and "key": "value" forms.
_SECRET_KEYS = (
    r"pass(?:word|wd|phrase)?|pwd|secret|client[_-]?secret|token|access[_-]?token|"
    r"refresh[_-]?token|auth[_-]?token|id[_-]?token|api[_-]?key|apikey|access[_-]?key|"
    r"secret[_-]?key|private[_-]?key|session[_-]?id|sessionid|sid|signature|sig|"
    r"credentials?|x-amz-signature|x-amz-credential|x-amz-security-token"
)

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header lines quoted in a log: keep the name, drop the whole value.
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|x-auth-token|"
            r"x-csrf-token|x-xsrf-token)(\s*:\s*)([^\r\n\"']+)"
        ),
        rf"\1\2{MASK}",
    ),
    # "Bearer abc…", "Basic dXNl…", "token abc…" wherever they appear.
    (re.compile(r"(?i)\b(bearer|basic|digest|token)\s+[A-Za-z0-9._~+/=-]{6,}"), rf"\1 {MASK}"),
    # user:password@ in URLs (upstreams, redirects, request lines).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@\"']*:[^/\s@\"']*@"), rf"\1{MASK}@"),
    # key=value in query strings and bodies, key: value and "key": "value" in JSON.
    (
        re.compile(
            rf"(?i)([\"']?)\b([\w.-]*(?:{_SECRET_KEYS}))\1(\s*[=:]\s*)([\"']?)"
            r"[^\s&\"',;}]+"
        ),
        rf"\1\2\1\3\4{MASK}",
    ),
    # Token shapes recognisable without a key name.
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{8,}"), MASK),  # Slack
    (re.compile(r"\bxapp-[A-Za-z0-9-]{8,}"), MASK),  # Slack app-level token
    (re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"), MASK),  # AWS key ids
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), MASK),  # JWT
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), MASK),  # GitHub
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}"), MASK),  # GitLab
    (re.compile(r"\bsk_(?:live|test)_[A-Za-z0-9]{16,}"), MASK),  # Stripe
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), MASK),  # Google API key
    (
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        MASK,
    ),
)


def redact(text: str) -> str:
    """``text`` with every secret-looking value replaced by ``[REDACTED]``."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text
