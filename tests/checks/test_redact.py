"""Secrets never leave the bot in quoted log lines."""

from __future__ import annotations

import pytest

from badgateway.checks.redact import MASK, redact

SECRETS: list[tuple[str, str]] = [
    ('request: "GET /login?user=bob&password=hunter2 HTTP/1.1"', "hunter2"),
    ("GET /cb?access_token=abc123def456&x=1", "abc123def456"),
    ("passwd=s3cr3t!", "s3cr3t!"),
    ("db_password: 'Tr0ub4dor'", "Tr0ub4dor"),
    ('{"client_secret": "zzzSECRETzzz", "name": "x"}', "zzzSECRETzzz"),
    ("/api?api_key=K123456789&page=2", "K123456789"),
    ("/api?apikey=K123456789", "K123456789"),
    ("secret=topsecretvalue", "topsecretvalue"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig-nature_x", "eyJhbGci"),
    ("authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("Cookie: sessionid=abcdef0123456789; theme=dark", "abcdef0123456789"),
    ("Set-Cookie: SESSION=xyz987xyz987; Path=/; HttpOnly", "xyz987xyz987"),
    ("calling with Bearer abcdefghijklmnop in header", "abcdefghijklmnop"),
    ("token xoxb-1234567890-abcdefghijkl leaked", "xoxb-1234567890-abcdefghijkl"),
    ("slack xoxp-11111-22222-33333-abcdef here", "xoxp-11111-22222-33333-abcdef"),
    ("aws key AKIAIOSFODNN7EXAMPLE in url", "AKIAIOSFODNN7EXAMPLE"),
    ("jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP", "dBjftJeZ4CVP"),
    ("a eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVP b", "dBjftJeZ4CVP"),
    ('upstream: "http://admin:pa55w0rd@10.0.0.5:8080/"', "pa55w0rd"),
    ("redis://:hunter2@cache:6379/0", "hunter2"),
    ("X-Api-Key: 0123456789abcdef", "0123456789abcdef"),
    ("ghp_abcdefghijklmnopqrstuvwxyz0123456789 pushed", "ghp_abcdefghijklmnopqrstuvwxyz0123"),
]


@pytest.mark.parametrize(("text", "secret"), SECRETS)
def test_secret_is_blanked(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert MASK in out


def test_admin_user_in_url_is_blanked_with_password() -> None:
    out = redact('upstream: "http://admin:pa55w0rd@10.0.0.5:8080/"')
    assert "admin" not in out and "10.0.0.5:8080" in out


HARMLESS = [
    "2024/05/01 12:00:00 [error] 7#7: *9 connect() failed (111: Connection refused) while "
    'connecting to upstream, client: 127.0.0.1, server: lab, request: "GET / HTTP/1.1", '
    'upstream: "http://127.0.0.1:8080/", host: "127.0.0.1:8081"',
    "[01-May-2024 12:00:00] WARNING: [pool www] child 812 exited on signal 15 (SIGTERM) after "
    "1.5 seconds from start",
    "127.0.0.1:5555 [01/May/2024:12:00:00.123] web app/app1 0/0/-1/-1/0 503 217 - - SC-- "
    '1/1/0/0/0 0/0 "GET /items?page=2 HTTP/1.1"',
]


@pytest.mark.parametrize("text", HARMLESS)
def test_ordinary_log_lines_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_private_key_block() -> None:
    text = "key: -----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY----- done"
    out = redact(text)
    assert "MIIEabc" not in out and out.endswith("done")
