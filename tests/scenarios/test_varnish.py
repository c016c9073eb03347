"""Varnish: the varnishlog and varnishncsa files a real Varnish 7.1 wrote while proxying to
misbehaving upstreams, read by checks.logparse.varnish; the error page Varnish itself
answered with; and whole diagnoses of a Varnish-fronted site."""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from badgateway.checks.logparse import LogLine, classifier, detect_format, record_splitter
from badgateway.checks.model import Cause
from tests.lab.diagnosis import diagnose_lab, explain
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.proxy_varnish import VarnishProxy

HOST = "Shop.Example"  # sent as Host: the records must name it, lower-cased
MARK = "t1.1"


def fetch(varnish: VarnishProxy, mark: str = MARK, timeout: float = 6.0) -> httpx.Response:
    url = f"{varnish.url}shop/cart?item=7&_bgw={mark}"
    return httpx.get(url, headers={"Host": HOST}, timeout=timeout)


def parsed_records(text: str) -> list[LogLine]:
    classify = classifier("varnish")
    found = [classify(record) for record in record_splitter("varnish")(text.splitlines())]
    return [p for p in found if p is not None]


def wait_for_lines(path: Path, count: int, timeout: float = 5.0) -> list[str]:
    """The file's lines once it has ``count`` of them (varnishncsa writes one per fetch)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return lines
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} has {len(lines)} line(s), not {count}, after {timeout} s")
        time.sleep(0.05)


def assert_recent(when: datetime | None) -> None:
    now = datetime.now().astimezone()
    assert when is not None and when.tzinfo is not None
    assert now - timedelta(minutes=1) < when <= now + timedelta(seconds=1)


def assert_varnish_error_page(response: httpx.Response) -> None:
    """Varnish's own answer to a failed fetch (builtin vcl_backend_error), whatever failed."""
    assert response.status_code == 503
    assert response.reason_phrase == "Backend fetch failed"
    assert response.headers["server"] == "Varnish"
    assert response.headers["via"] == "1.1 varnish (Varnish/7.1)"
    assert response.headers["retry-after"] == "5"
    assert re.fullmatch(r"\d+", response.headers["x-varnish"])
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>503 Backend fetch failed</title>" in response.text
    assert "<h3>Guru Meditation:</h3>" in response.text
    assert re.search(r"<p>XID: \d+</p>", response.text)
    assert "<p>Varnish cache server</p>" in response.text


# (upstream kind, its options, the cause, what varnishlog's FetchError/BogoHeader says)
CASES: list[tuple[str, dict[str, Any], Cause, str]] = [
    ("refused", {}, Cause.UPSTREAM_REFUSED, r"FetchError +backend app: fail errno 111 "),
    ("slow", {"delay_s": 3}, Cause.UPSTREAM_TIMEOUT, r"FetchError +first byte timeout"),
    ("close_mid_response", {}, Cause.UPSTREAM_CLOSED, r"FetchError +HTC eof \(-1\)"),
    ("flaky", {"fail_first": 5}, Cause.UPSTREAM_CLOSED, r"FetchError +HTC eof \(-1\)"),
    ("garbage", {}, Cause.UPSTREAM_INVALID, r"FetchError +http format error"),
    ("bad_header", {}, Cause.UPSTREAM_INVALID, r"BogoHeader +Header has ctrl char 0x00"),
    # 64 KiB of cookies: over http_resp_size (32 KiB) before the headers end
    ("huge_headers", {}, Cause.UPSTREAM_HEADER_TOO_BIG, r"FetchError +overflow"),
    # one 10 KB header: over http_resp_hdr_len (8 KiB)
    (
        "huge_headers",
        {"cookie_bytes": 10000, "header_bytes": 20000},
        Cause.UPSTREAM_HEADER_TOO_BIG,
        r"BogoHeader +Header too long: Set-Cookie",
    ),
    # many small headers: over http_max_hdr (64)
    (
        "huge_headers",
        {"cookie_bytes": 50, "header_bytes": 8000},
        Cause.UPSTREAM_HEADER_TOO_BIG,
        r"BogoHeader +Too many headers: Set-Cookie",
    ),
]


@pytest.mark.parametrize(("kind", "opts", "cause", "pattern"), CASES)
def test_varnishlog_and_varnishncsa_name_the_cause(
    upstream: Callable[..., Upstream],
    varnish_proxy: Callable[..., VarnishProxy],
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
    pattern: str,
) -> None:
    app = upstream(kind, **opts)
    varnish = varnish_proxy(app)
    assert_varnish_error_page(fetch(varnish))
    text = varnish.wait_for_log(pattern)
    lines = text.splitlines()
    assert detect_format(lines) == "varnish"

    # varnishlog -g request: the client request and its fetch are one record
    [record] = parsed_records(text)
    assert record.cause is cause and record.is_error and not record.secondary
    assert record.host == HOST.lower()
    assert record.backend == "app"
    # a failed connect has no BackendOpen: the backend's name is all the record shows
    assert record.upstream == ("app" if kind == "refused" else app.address)
    assert record.client is not None and re.fullmatch(r"127\.0\.0\.1:\d+", record.client)
    assert record.mark == MARK
    assert_recent(record.when)

    assert varnish.access_log is not None
    ncsa_lines = wait_for_lines(varnish.access_log, 1)
    assert detect_format(ncsa_lines) == "varnish"
    [line] = parsed_records("\n".join(ncsa_lines))
    assert line.cause is cause and line.is_error and not line.secondary
    assert (line.host, line.backend, line.mark) == (HOST.lower(), "app", MARK)
    assert line.upstream == ("app" if kind == "refused" else app.address)
    assert_recent(line.when)


@pytest.mark.parametrize("options", [["-v", "-g", "request"], ["-g", "session"]])
def test_other_varnishlog_layouts(
    upstream: Callable[..., Upstream],
    varnish_proxy: Callable[..., VarnishProxy],
    options: list[str],
) -> None:
    """-v puts the vxid and side on every record; -g session nests the request (and its
    fetch) in its client connection. The same failure reads the same."""
    varnish = varnish_proxy(upstream("close_mid_response"))
    fetch(varnish)
    varnish.wait_for_log(r"HTC eof")
    # -d: what the shared memory still holds, then exit
    dumped = subprocess.run(
        ["varnishlog", "-n", varnish.instance, "-d", *options],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert detect_format(dumped.splitlines()) == "varnish"
    [failed] = [p for p in parsed_records(dumped) if p.is_error]
    assert failed.cause is Cause.UPSTREAM_CLOSED and failed.mark == MARK
    assert failed.client is not None and failed.host == HOST.lower()
    assert failed.upstream is not None and failed.backend == "app"


def test_app_error_passes_through_without_a_cause(
    upstream: Callable[..., Upstream], varnish_proxy: Callable[..., VarnishProxy]
) -> None:
    """The app's own 500 is logged (RespStatus >= 500) as an error no FetchError explains."""
    varnish = varnish_proxy(upstream("error500"))
    response = fetch(varnish)
    assert response.status_code == 500 and "Guru Meditation" not in response.text
    assert response.headers["via"] == "1.1 varnish (Varnish/7.1)"
    [record] = parsed_records(varnish.wait_for_log(r"RespStatus +500"))
    assert record.is_error and record.cause is None and not record.secondary
    assert varnish.access_log is not None
    [line] = parsed_records(wait_for_lines(varnish.access_log, 1)[0])
    assert line.is_error and line.cause is None and line.upstream is not None


def test_successful_fetches_are_not_logged(
    upstream: Callable[..., Upstream], varnish_proxy: Callable[..., VarnishProxy]
) -> None:
    """The lab's query keeps varnishlog's file to failed requests; varnishncsa logs every
    fetch. Once the app is gone, the next request is the file's first record."""
    app = upstream("ok")
    varnish = varnish_proxy(app)
    assert fetch(varnish, mark="t1.1").status_code == 200
    app.stop()
    assert fetch(varnish, mark="t1.2").status_code == 503
    [failed] = parsed_records(varnish.wait_for_log(r"FetchError"))
    assert failed.mark == "t1.2" and failed.cause is Cause.UPSTREAM_REFUSED
    assert varnish.access_log is not None
    served, refused = parsed_records("\n".join(wait_for_lines(varnish.access_log, 2)))
    assert (served.mark, served.is_error, served.cause) == ("t1.1", False, None)
    assert served.upstream == app.address
    assert (refused.mark, refused.cause) == ("t1.2", Cause.UPSTREAM_REFUSED)


def test_held_down_connects_are_consequences(
    upstream: Callable[..., Upstream], varnish_proxy: Callable[..., VarnishProxy]
) -> None:
    """After a refused connect Varnish does not try the backend again for
    backend_remote_error_holddown, and logs "fail errno 0 (Success)" instead."""
    varnish = varnish_proxy(upstream("refused"), params={"backend_remote_error_holddown": "60"})
    for attempt in (1, 2):
        assert fetch(varnish, mark=f"t1.{attempt}").status_code == 503
    text = varnish.wait_for_log(r"fail errno 0 \(Success\)")
    first, second = parsed_records(text)
    assert (first.cause, first.secondary, first.mark) == (Cause.UPSTREAM_REFUSED, False, "t1.1")
    assert (second.cause, second.secondary, second.mark) == (None, True, "t1.2")
    assert second.is_error and second.backend == "app"


def test_vxid_grouping_logs_the_fetch_apart(
    upstream: Callable[..., Upstream], varnish_proxy: Callable[..., VarnishProxy]
) -> None:
    """With -g vxid the fetch is a record of its own; the client's request, which does not
    say why, is only a consequence of it."""
    varnish = varnish_proxy(upstream("refused"), grouping="vxid")
    fetch(varnish)
    text = varnish.wait_for_log(r"<< Request")
    assert "<< BeReq" in text and detect_format(text.splitlines()) == "varnish"
    by_cause = {p.cause: p for p in parsed_records(text)}
    fetch_record, request_record = by_cause[Cause.UPSTREAM_REFUSED], by_cause[None]
    assert not fetch_record.secondary and fetch_record.host == HOST.lower()
    assert fetch_record.mark == MARK and fetch_record.client is None
    assert request_record.secondary and request_record.is_error
    assert request_record.client is not None and request_record.mark == MARK


@pytest.fixture
def full_listen_queue() -> Iterator[str]:
    """A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    to it times out (a real connect timeout on loopback, no firewall needed)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)  # Linux queues one connection past a backlog of 0, then is full
        address = listener.getsockname()
        with socket.create_connection(address, timeout=2):  # never accepted: fills the queue
            yield f"{address[0]}:{address[1]}"


def test_connect_timeout(
    full_listen_queue: str, varnish_proxy: Callable[..., VarnishProxy]
) -> None:
    varnish = varnish_proxy(full_listen_queue, connect_timeout_s=0.5)
    assert_varnish_error_page(fetch(varnish))
    [record] = parsed_records(varnish.wait_for_log(r"fail errno 110 \(Connection timed out\)"))
    assert record.cause is Cause.UPSTREAM_TIMEOUT and not record.secondary
    assert record.what == "connect to the backend timed out"


def test_busy_backend_is_overload(
    upstream: Callable[..., Upstream], varnish_proxy: Callable[..., VarnishProxy]
) -> None:
    """A backend at its .max_connections: the next fetch is not even tried."""
    app = upstream("slow", delay_s=3)
    varnish = varnish_proxy(app, max_connections=1, first_byte_timeout_s=2)
    hold = threading.Thread(target=fetch, args=(varnish, "t0.1"))
    hold.start()
    try:
        deadline = time.monotonic() + 5
        while not app.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert_varnish_error_page(fetch(varnish))
        text = varnish.wait_for_log(r"backend app: busy")
    finally:
        hold.join()
    busy = next(p for p in parsed_records(text) if p.mark == MARK)
    assert (busy.cause, busy.secondary, busy.backend) == (Cause.OVERLOAD, True, "app")


def test_an_unknown_fetch_error_is_an_error_without_a_cause(
    upstream: Callable[..., Upstream], varnish_proxy: Callable[..., VarnishProxy]
) -> None:
    """A FetchError the module does not know (here put in place of a real one)."""
    varnish = varnish_proxy(upstream("refused"))
    fetch(varnish)
    text = varnish.wait_for_log(r"FetchError")
    altered = re.sub(r"(FetchError +).*", r"\1Could not get storage", text)
    [record] = parsed_records(altered)
    assert record.is_error and record.cause is None and not record.secondary
    assert record.what == "FetchError: Could not get storage"


def test_other_formats_are_not_varnish() -> None:
    from badgateway.checks.logparse import varnish

    for line in (
        "2024/05/01 12:00:00 [error] 12#12: *3 connect() failed (111: Connection refused)",
        '127.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 503 278 "-" "curl"',
        "[01-May-2024 12:00:00] WARNING: [pool www] server reached pm.max_children setting",
        "- plain text with a dash",
    ):
        assert not varnish.detect(line), line
        assert varnish.classify(line) is None, line


# --- whole diagnoses --------------------------------------------------------------------


E2E_CASES: list[tuple[str, dict[str, Any], Cause]] = [
    ("refused", {}, Cause.UPSTREAM_REFUSED),
    ("slow", {"delay_s": 4}, Cause.UPSTREAM_TIMEOUT),
    ("close_mid_response", {}, Cause.UPSTREAM_CLOSED),
]


@pytest.mark.parametrize(("kind", "opts", "cause"), E2E_CASES)
async def test_diagnosis_of_a_quiet_varnish_site(
    upstream: Callable[..., Upstream],
    varnish_proxy: Callable[..., VarnishProxy],
    kind: str,
    opts: dict[str, Any],
    cause: Cause,
) -> None:
    """Nobody else sends traffic: the diagnosis's own requests are what Varnish logs, and
    the logs step must read them (after they reached Varnish) to name the cause."""
    app = upstream(kind, **opts)
    varnish = varnish_proxy(app)
    diagnosis = await diagnose_lab(varnish.url, [varnish.error_log], (app.address,))
    assert diagnosis.verdict.cause is cause, explain(diagnosis)
    assert any(f.code == f"log_{cause.value}" for f in diagnosis.verdict.evidence), explain(
        diagnosis
    )
