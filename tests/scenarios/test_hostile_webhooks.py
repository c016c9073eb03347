"""Hostile input to the alert webhooks over real HTTP: every request gets a 2xx or 4xx with
one short reason, never a 5xx, and leaves no traceback in the logs.

The requests are written as raw bytes on a socket, so header values can hold what no HTTP
client library would send (a byte that is not UTF-8, 9 KiB of token). The bot is the real
aiohttp app with the real routes; state is a real redis-server; Slack is the local stand-in.
The issue's inputs are a regression corpus; Hypothesis adds its own (as many as
tests/scenarios/test_hostile_inputs.py's ``examples`` says).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import event, example, given
from hypothesis import strategies as st
from redis.asyncio import Redis

from badgateway.bot.malformed_http import quiet_malformed_requests
from tests.hypothesis_profiles import CHEAP, examples
from tests.lab.alerts import ALERTS_TOKEN, Bot, serve_webhooks
from tests.lab.fixtures_slack import SlackStandIn

PATHS = ("/alerts", "/alerts/alertmanager")
TOKEN = ALERTS_TOKEN.encode()
ANSWER_WITHIN_S = 3.0


@dataclass
class Answer:
    status: int
    body: bytes

    @property
    def reason(self) -> str:
        """The refusal's reason, or why an accepted notification's first alert was skipped."""
        document = json.loads(self.body)
        assert isinstance(document, dict), self.body
        if "error" in document:
            return str(document["error"])
        skipped: list[dict[str, Any]] = document.get("skipped", [])
        return str(skipped[0]["reason"]) if skipped else ""


def _port(bot: Bot) -> int:
    return int(bot.base.rsplit(":", 1)[1])


async def send_raw(
    bot: Bot,
    path: str,
    body: bytes,
    *,
    authorization: bytes | None = b"Bearer " + TOKEN,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Answer:
    """One HTTP/1.1 request written byte for byte; the answer read until the server closes."""
    lines = [
        b"POST " + path.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Connection: close",
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(body)).encode(),
    ]
    if authorization is not None:
        lines.append(b"Authorization: " + authorization)
    lines += [name + b": " + value for name, value in headers or []]
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(bot))
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        started = time.monotonic()
        data = await asyncio.wait_for(reader.read(), ANSWER_WITHIN_S)
        assert time.monotonic() - started < ANSWER_WITHIN_S
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1."), data[:200]
    return Answer(int(status_line.split()[1]), payload)


def assert_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing at ERROR and no traceback: a hostile request is not the server's failure."""
    loud = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not loud, [(r.name, r.getMessage()) for r in loud]


def assert_one_clear_reason(answer: Answer) -> str:
    reason = answer.reason
    assert reason and reason.isprintable() and len(reason) <= 300, reason
    return reason


@pytest_asyncio.fixture
async def bot(redis: Redis, slack_api: SlackStandIn) -> AsyncIterator[Bot]:
    """No diagnosis: it would look up the random host names Hypothesis writes into URLs (the
    diagnosis is tested elsewhere)."""
    async for served in serve_webhooks(redis, slack_api, ALERTS_TOKEN, diagnose=False):
        yield served


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)  # the quiet line for a malformed request is INFO
    return caplog


# The regression corpus: the inputs of issue 9 -------------------------------------------------

DEEP = b'{"site": ' + b"[" * 500 + b"]" * 500 + b', "status": "firing"}'
LONG_NUMBER = b'{"site": "shop", "status": "firing", "n": ' + b"7" * 4401 + b"}"


def _alertmanager(labels: dict[str, Any]) -> bytes:
    alert = {"status": "firing", "labels": {"alertname": "SiteDown", **labels}}
    return json.dumps({"version": "4", "status": "firing", "alerts": [alert]}).encode()


CORPUS: list[tuple[str, str, dict[str, Any], int, str]] = [
    # (name, path, how it is sent, status, words in the reason)
    ("bearer not UTF-8", "/alerts", {"authorization": b"Bearer \xe8"}, 401, "bearer token"),
    (
        "bearer only \\xff",
        "/alerts",
        {"authorization": b"Bearer " + TOKEN + b"\xff"},
        401,
        "bearer",
    ),
    ("scheme not UTF-8", "/alerts", {"authorization": b"B\xe9arer " + TOKEN}, 401, "bearer"),
    (
        "two Authorization headers",
        "/alerts",
        {"headers": [(b"Authorization", b"Bearer " + TOKEN)]},
        401,
        "bearer",
    ),
    ("url //[::1", "/alerts", {"body": b'{"url": "//[::1", "status": "firing"}'}, 400, "IPv6"),
    (
        "url http://]/",
        "/alerts",
        {"body": b'{"url": "http://]/", "status": "firing"}'},
        400,
        "IPv6",
    ),
    # Alertmanager resends on any non-2xx: its alerts the bot cannot use are skipped, with
    # the reason in the 202 answer.
    (
        "label url http://]/",
        "/alerts/alertmanager",
        {"body": _alertmanager({"url": "http://]/"})},
        202,
        "Invalid IPv6 URL",
    ),
    (
        "label url with a port out of range",
        "/alerts/alertmanager",
        {"body": _alertmanager({"url": "http://shop.example.com:99999/"})},
        202,
        "alerts[0]: 'url' is not a URL",
    ),
    (
        "url with a newline",
        "/alerts",
        {"body": b'{"url": "http://a\\nb/", "status": "firing"}'},
        400,
        "cannot be diagnosed",
    ),
    ("nested 500 deep", "/alerts", {"body": DEEP}, 400, "nested deeper than"),
    (
        "nested 500 deep (alertmanager)",
        "/alerts/alertmanager",
        {"body": b"[" * 500 + b"]" * 500},
        400,
        "nested deeper than",
    ),
    ("a 4,401-digit number", "/alerts", {"body": LONG_NUMBER}, 400, "number longer than"),
    ("body not UTF-8", "/alerts", {"body": b"\xe8"}, 400, "not UTF-8"),
    ("body only a BOM", "/alerts", {"body": b"\xef\xbb\xbf"}, 400, "not JSON"),
    ("NaN", "/alerts", {"body": b'{"site": NaN}'}, 400, "NaN is not JSON"),
    ("site a list", "/alerts", {"body": b'{"site": [], "status": "firing"}'}, 400, "string"),
    (
        "unknown site with a newline",
        "/alerts",
        {"body": b'{"site": "no\\nsuch", "status": "firing"}'},
        400,
        r"unknown site 'no\nsuch'",
    ),
]


@pytest.mark.parametrize(
    ("path", "how", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CORPUS],
)
async def test_the_issues_inputs_get_an_answer_with_one_reason(
    bot: Bot,
    slack_api: SlackStandIn,
    redis: Redis,
    logs: pytest.LogCaptureFixture,
    path: str,
    how: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    answer = await send_raw(
        bot,
        path,
        how.get("body", b'{"site": "shop", "status": "firing"}'),
        authorization=how.get("authorization", b"Bearer " + TOKEN),
        headers=how.get("headers"),
    )
    assert answer.status == status, answer
    assert reason in assert_one_clear_reason(answer)
    assert_quiet(logs)
    assert await redis.keys("*") == [] and slack_api.calls == []


async def test_a_header_over_aiohttps_limit_is_a_quiet_400(
    bot: Bot, slack_api: SlackStandIn, logs: pytest.LogCaptureFixture
) -> None:
    for path in PATHS:
        for _ in range(3):
            answer = await send_raw(bot, path, b"{}", authorization=b"Bearer " + b"a" * 9000)
            assert answer.status == 400
    assert_quiet(logs)
    # Still logged, one line each: who sent what kind of request, without the header.
    quiet = [r for r in logs.records if r.name == "aiohttp.server"]
    assert len(quiet) == 6 and all("(LineTooLong)" in r.getMessage() for r in quiet)
    assert all("aaaa" not in r.getMessage() for r in quiet)
    assert slack_api.calls == []


def test_the_quiet_filter_lets_the_servers_own_errors_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Only client errors lose their traceback: a handler's exception keeps its own."""
    quiet_malformed_requests()
    server_log = logging.getLogger("aiohttp.server")
    try:
        raise KeyError("a bug in a handler")
    except KeyError:
        server_log.exception("Error handling request from %s", "127.0.0.1")
    assert [(r.levelno, bool(r.exc_info)) for r in caplog.records] == [(logging.ERROR, True)]


# Properties -----------------------------------------------------------------------------------

# Header values as bytes: anything but CR and LF (those would end the header, not fill it);
# mostly bytes aiohttp lets through to the handler (no control characters), so that the
# token check sees them, but also those it refuses itself.
header_bytes = st.one_of(
    st.binary(max_size=64).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.lists(st.integers(min_value=0x20, max_value=0xFF), max_size=64).map(bytes),
    st.lists(st.integers(min_value=0x20, max_value=0xFF), max_size=64).map(bytes),
)
authorizations = st.one_of(
    st.none(),
    header_bytes,
    header_bytes.map(lambda b: b"Bearer " + b),
    st.sampled_from([b"Bearer", b"Bearer ", b"bearer " + TOKEN[:-1], b"Basic " + TOKEN]),
    st.text(max_size=40).map(lambda t: ("Bearer " + t).encode("utf-8", "surrogatepass")),
)
extra_headers = st.lists(
    st.tuples(
        st.sampled_from([b"X-Anything", b"Content-Type", b"Accept", b"X-Forwarded-For"]),
        header_bytes,
    ),
    max_size=3,
)


@examples(CHEAP)
@given(
    path=st.sampled_from(PATHS),
    authorization=authorizations,
    headers=extra_headers,
    body=st.binary(max_size=256),
)
@example(path="/alerts", authorization=b"Bearer \xe8", headers=[], body=b"{}")
async def test_unauthenticated_requests_are_refused_before_the_body_is_read(
    bot: Bot,
    slack_api: SlackStandIn,
    redis: Redis,
    logs: pytest.LogCaptureFixture,
    path: str,
    authorization: bytes | None,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    logs.clear()
    answer = await send_raw(bot, path, body, authorization=authorization, headers=headers)
    event(f"answered {answer.status}")
    # 400 only when aiohttp itself refuses the request's bytes (a header it cannot parse).
    assert answer.status in (400, 401), answer
    if answer.status == 401:
        assert assert_one_clear_reason(answer) == "missing or wrong bearer token"
    assert_quiet(logs)
    assert await redis.keys("*") == [] and slack_api.calls == []


def _json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=8), children, max_size=4)
        ),
        max_leaves=12,
    )


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
hostile_urls = st.one_of(
    st.sampled_from(
        [
            "//[::1",
            "http://]/",
            "http://[::1",
            "http://shop.example.com:0/",
            "http://shop.example.com:99999/",
            "http://shop.example.com:x/",
            "https://user:pw@shop.example.com/",
            "http://0x-d/",
            "http://a\nb/",
            "http:///",
            "ftp://shop.example.com/",
            "http://" + "a" * 300 + "/",
            "http://127.0.0.2:9/health",
            "http://shop.example.com/",
        ]
    ),
    st.text(max_size=30),
    st.text(max_size=30).map(lambda t: "http://" + t),
    st.text(max_size=30).map(lambda t: "https://" + t + "/"),
)
names = st.one_of(st.sampled_from(["shop", "", "nosuch", "<!here>"]), st.text(max_size=12))
statuses = st.one_of(st.sampled_from(["firing", "resolved", "burning"]), json_leaves)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with any subset of ``fields``: absent and present keys both get tried."""
    return st.fixed_dictionaries({}, optional=fields)


generic_alerts = _optional(
    site=st.one_of(names, json_leaves),
    url=st.one_of(hostile_urls, json_leaves),
    status=statuses,
    summary=st.one_of(st.text(max_size=40), json_leaves),
)
labels = st.one_of(
    _optional(
        site=names,
        url=hostile_urls,
        instance=hostile_urls,
        alertname=st.one_of(st.text(max_size=12), json_leaves),
    ),
    _json_values(json_leaves),
)
alertmanager_alerts = _optional(
    status=statuses,
    labels=labels,
    annotations=_optional(url=hostile_urls, summary=st.text(max_size=20)) | json_leaves,
)
alertmanager_bodies = _optional(
    version=st.sampled_from(["4", 4, "3"]) | json_leaves,
    alerts=st.lists(alertmanager_alerts, max_size=3) | json_leaves,
    commonLabels=labels | json_leaves,
)
# Near misses: well-formed alerts with a hostile URL or summary, most of them accepted.
firing_or_resolved = st.sampled_from(["firing", "resolved"])
near_generic = st.one_of(
    *(
        st.fixed_dictionaries(
            {key: named, "status": firing_or_resolved}, optional={"summary": st.text(max_size=40)}
        )
        for key, named in (("site", st.just("shop")), ("url", hostile_urls))
    )
)
near_alertmanager = st.fixed_dictionaries(
    {
        "version": st.just("4"),
        "alerts": st.lists(
            st.fixed_dictionaries(
                {
                    "status": firing_or_resolved,
                    "labels": st.one_of(
                        st.fixed_dictionaries({"site": st.just("shop")}),
                        st.fixed_dictionaries({"url": hostile_urls}),
                        st.fixed_dictionaries({"instance": hostile_urls}),
                    ),
                },
                optional={"annotations": st.fixed_dictionaries({"summary": st.text(max_size=40)})},
            ),
            min_size=1,
            max_size=3,
        ),
    }
)


def _encoded(values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return values.map(lambda value: json.dumps(value).encode())


# (path, body): the near misses to the path they are meant for, anything else to either.
requests = st.one_of(
    st.tuples(st.just("/alerts"), _encoded(near_generic)),
    st.tuples(st.just("/alerts/alertmanager"), _encoded(near_alertmanager)),
    st.tuples(
        st.sampled_from(PATHS),
        st.one_of(
            _encoded(_json_values(json_leaves)),
            _encoded(generic_alerts),
            _encoded(alertmanager_bodies),
            st.binary(max_size=64),
            st.text(max_size=64).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.integers(min_value=1, max_value=2000).map(lambda n: b"[" * n + b"]" * n),
            st.integers(min_value=90, max_value=5000).map(lambda n: b'{"n": ' + b"9" * n + b"}"),
        ),
    ),
)


@examples(CHEAP)
@given(request=requests)
@example(request=("/alerts", b'{"url": "//[::1", "status": "firing"}'))
@example(request=("/alerts/alertmanager", _alertmanager({"url": "http://]/"})))
@example(request=("/alerts", DEEP))
@example(request=("/alerts", LONG_NUMBER))
async def test_authenticated_bodies_get_an_answer_with_a_reason(
    bot: Bot, logs: pytest.LogCaptureFixture, request: tuple[str, bytes]
) -> None:
    logs.clear()
    path, body = request
    answer = await send_raw(bot, path, body)
    event(f"answered {answer.status}")
    assert answer.status in (202, 400, 413), answer
    if answer.status == 202:
        accepted = json.loads(answer.body)
        assert isinstance(accepted["incidents"], list)
        # Only Alertmanager gets a 2xx for a notification with nothing usable: it would resend
        # the group for ever otherwise. The answer still says why.
        assert accepted["accepted"] >= 1 or (path.endswith("alertmanager") and accepted["skipped"])
        for skipped in accepted["skipped"]:  # each skipped alert says why, in one clear line
            assert_one_clear_reason(Answer(202, json.dumps({"error": skipped["reason"]}).encode()))
    else:
        assert_one_clear_reason(answer)
    assert_quiet(logs)
