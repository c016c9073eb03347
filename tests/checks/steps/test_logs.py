"""The "logs" step on logs real servers wrote: window, tail, redaction, detection,
consequences, the app server explaining the proxy, and the ways it must not crash."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import httpx

from badgateway.checks.context import ProbeContext
from badgateway.checks.logscan import TAIL_BYTES
from badgateway.checks.model import Cause, Status, Weight
from badgateway.checks.runner import assemble_parts, part_places, run_part
from badgateway.checks.settings import LogSource, Settings, Site
from badgateway.checks.steps import step_named
from badgateway.checks.steps.logs import run
from badgateway.checks.target import parse_target
from tests.lab.diagnosis import run_logs
from tests.lab.fixtures_proxies import Proxy


def get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=6).status_code
    except httpx.HTTPError:
        return None


def test_registered() -> None:
    step = step_named("logs")
    assert step is not None and step.order == 40 and step.parts is not None


async def test_no_site_or_no_logs_is_skipped() -> None:
    for result in (await run_logs(site=False), await run_logs()):
        assert result.status is Status.SKIPPED
        assert "logs = [" in result.summary


async def test_unreadable_log_is_a_warning(tmp_path: Path) -> None:
    result = await run_logs(
        LogSource(str(tmp_path / "missing.log")),
        LogSource(str(tmp_path)),  # a directory
    )
    assert result.status is Status.WARN
    assert [f.code for f in result.findings] == ["log_unreadable", "log_unreadable"]


async def test_refused_upstream_with_secrets_redacted(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    app = upstream("refused")
    proxy = nginx_proxy(app)
    for _ in range(3):
        assert get(proxy.url + "login?user=bob&password=hunter2&token=abcdef123456") == 502
    proxy.wait_for_log(r"(?s)(Connection refused.*){3}")
    result = await run_logs(LogSource(str(proxy.error_log)))  # format detected
    assert result.status is Status.FAIL
    [finding] = [f for f in result.findings if f.cause]
    assert finding.cause is Cause.UPSTREAM_REFUSED and finding.weight is Weight.OBSERVED
    assert finding.data["count"] == 3
    assert finding.data["upstream"] == app.address
    assert app.address in finding.data["next_step"]
    assert finding.data["log"] == str(proxy.error_log)
    assert len(finding.data["samples"]) == 3
    text = json.dumps(result.to_dict())
    assert "hunter2" not in text and "abcdef123456" not in text and "[REDACTED]" in text
    assert result.details["logs"][0]["format"] == "nginx"
    assert result.details["logs"][0]["format_detected"] is True


async def test_window_and_tail(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = nginx_proxy(upstream("slow", delay_s=3))
    assert get(proxy.url) == 504
    real = proxy.wait_for_log(r"upstream timed out").strip().splitlines()[-1]
    # The same real line, written two hours earlier: outside a 15-minute window.
    old_time = (datetime.now() - timedelta(hours=2)).strftime("%Y/%m/%d %H:%M:%S")
    old = re.sub(r"^\S+ \S+", old_time, real)
    log = tmp_path / "error.log"
    filler = "x" * 1000 + "\n"
    # 3 MiB of old noise first: only the last 2 MiB are read.
    log.write_text(old + "\n" + filler * 3000 + old + "\n" + real + "\n" + real + "\n")
    result = await run_logs(LogSource(str(log), format="nginx"), window_s=900)
    [finding] = [f for f in result.findings if f.cause]
    assert finding.cause is Cause.UPSTREAM_TIMEOUT and finding.data["count"] == 2
    assert result.details["logs"][0]["bytes_read"] <= TAIL_BYTES
    log.write_text(old + "\n" + filler + old + "\n")
    quiet = await run_logs(LogSource(str(log), format="nginx"), window_s=900)
    assert quiet.status is Status.OK
    assert [f.code for f in quiet.findings] == ["log_quiet"]


async def test_unknown_error_lines_are_counted_not_claimed(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy], tmp_path: Path
) -> None:
    proxy = nginx_proxy(upstream("ok"))
    assert get(proxy.url) == 200
    stamp = datetime.now().strftime("%Y/%m/%d %H:%M:%S")
    log = tmp_path / "error.log"
    log.write_text(
        f'{stamp} [error] 7#7: *1 open() "/srv/x" failed (2: No such file or directory)\n'
        f"{stamp} [warn] 7#7: *2 an upstream response is buffered to a temporary file\n"
    )
    result = await run_logs(LogSource(str(log)), LogSource(str(proxy.error_log)))
    assert result.status is Status.WARN
    codes = [f.code for f in result.findings]
    assert codes == ["log_unclassified_errors", "log_quiet"]
    assert result.findings[0].data["count"] == 1 and result.findings[0].cause is None


async def test_access_log_is_not_a_format(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text('127.0.0.1 - - [01/May/2024:12:00:00 +0000] "GET / HTTP/1.1" 502 1 "-" "x"\n')
    result = await run_logs(LogSource(str(log)))
    assert [f.code for f in result.findings] == ["log_format_unknown"]


async def test_no_live_upstreams_follows_the_refusals(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    proxy = nginx_proxy([upstream("refused"), upstream("refused")])
    get(proxy.url)
    get(proxy.url)
    get(proxy.url)
    proxy.wait_for_log(r"no live upstreams")
    result = await run_logs(LogSource(str(proxy.error_log)))
    claimed = {f.cause: f.data["count"] for f in result.findings if f.cause}
    assert claimed == {Cause.UPSTREAM_REFUSED: 2}
    assert "log_consequence" in [f.code for f in result.findings]


async def test_max_conns_no_live_upstreams_is_overload(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    app = upstream("slow", delay_s=2)
    proxy = nginx_proxy(app, max_conns=1, read_timeout_s=5)
    hold = threading.Thread(target=get, args=(proxy.url,))
    hold.start()
    try:
        for _ in range(200):  # until the first request holds the only connection
            if app.connections:
                break
            await asyncio.sleep(0.02)
        assert get(proxy.url) == 502
    finally:
        hold.join()
    proxy.wait_for_log(r"no live upstreams")
    result = await run_logs(LogSource(str(proxy.error_log)))
    claimed = [f for f in result.findings if f.cause]
    assert [f.cause for f in claimed] == [Cause.OVERLOAD]


async def test_php_fpm_explains_the_proxy(
    php_fpm: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    fpm = php_fpm(max_children=4, terminate_timeout_s=1)
    proxy = nginx_proxy(php=fpm, read_timeout_s=4)
    assert get(proxy.url + "sleep.php?s=3") == 502
    fpm.wait_for_log(r"execution timed out")
    proxy.wait_for_log(r"Connection reset|prematurely closed")
    result = await run_logs(LogSource(str(proxy.error_log)), LogSource(str(fpm.error_log)))
    claimed = [f for f in result.findings if f.cause]
    assert [f.cause for f in claimed] == [Cause.APP_TIMEOUT]
    assert claimed[0].severity is Status.FAIL
    [symptom] = [f for f in result.findings if f.data.get("explained_by")]
    assert symptom.data["cause_seen"] == "upstream_closed" and symptom.severity is Status.WARN


def _two_machine_context(
    proxy_log: Path, app_log: Path, proxy_host: str, app_host: str
) -> ProbeContext:
    logs = (LogSource(str(proxy_log), host=proxy_host), LogSource(str(app_log), host=app_host))
    site = Site(name="lab", url="http://127.0.0.1:1/", logs=logs)
    settings = Settings(allow_networks=(ip_network("127.0.0.0/8"),), sites=(site,))
    return ProbeContext(target=parse_target("http://127.0.0.1:1/", settings), settings=settings)


async def test_logs_on_two_machines_are_read_apart_and_explain_each_other(
    php_fpm: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    """The proxy's log on web-1 and php-fpm's on app-1: each part is read where it lies (here
    both are local files), travels as JSON, and the assembly still lets php-fpm explain the
    proxy's 502."""
    fpm = php_fpm(max_children=4, terminate_timeout_s=1)
    proxy = nginx_proxy(php=fpm, read_timeout_s=4)
    assert get(proxy.url + "sleep.php?s=3") == 502
    fpm.wait_for_log(r"execution timed out")
    proxy.wait_for_log(r"Connection reset|prematurely closed")
    ctx = _two_machine_context(proxy.error_log, fpm.error_log, "web-1", "app-1")
    step = step_named("logs")
    assert step is not None and step.parts is not None
    assert part_places(step, ctx) == ("app-1", "web-1")

    parts = {
        place: json.loads(json.dumps(await run_part(step, ctx, place)))
        for place in ("app-1", "web-1")
    }
    assert [s["path"] for s in parts["web-1"]["scans"]] == [f"web-1:{proxy.error_log}"]
    assert [s["path"] for s in parts["app-1"]["scans"]] == [f"app-1:{fpm.error_log}"]
    result = assemble_parts(step, ctx, parts)
    claimed = [f for f in result.findings if f.cause]
    assert [f.cause for f in claimed] == [Cause.APP_TIMEOUT]
    assert claimed[0].data["log"] == f"app-1:{fpm.error_log}"
    [symptom] = [f for f in result.findings if f.data.get("explained_by")]
    assert symptom.data["cause_seen"] == "upstream_closed"
    assert symptom.data["log"] == f"web-1:{proxy.error_log}"

    # One machine's part never came: what the other says still stands, and the gap is shown.
    gap = assemble_parts(step, ctx, {"web-1": parts["web-1"], "app-1": {"missing": "host down"}})
    assert [f.cause for f in gap.findings if f.cause] == [Cause.UPSTREAM_CLOSED]
    [unread] = [f for f in gap.findings if f.code == "log_host_unread"]
    assert unread.severity is Status.WARN and "host down" in unread.message
    assert str(fpm.error_log) in unread.message and "app-1 not read" in gap.summary


async def test_one_process_reads_only_the_logs_on_its_own_machine(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    """`badgateway diagnose` with no queue: a file that the sites file places on another
    machine is not read here (a file of that path here is another machine's log)."""
    proxy = nginx_proxy(upstream("refused"))
    assert get(proxy.url) == 502
    proxy.wait_for_log(r"Connection refused")
    here = socket.gethostname()
    # The same file twice: once said to be on this machine, once on app-1.
    ctx = _two_machine_context(proxy.error_log, proxy.error_log, here, "app-1")
    result = await run(ctx)
    claimed = [f for f in result.findings if f.cause]
    assert [(f.cause, f.data["log"]) for f in claimed] == [
        (Cause.UPSTREAM_REFUSED, f"{here}:{proxy.error_log}")
    ]
    [unread] = [f for f in result.findings if f.code == "log_host_unread"]
    assert "logs@app-1" in unread.message and str(proxy.error_log) in unread.message
    assert [entry["path"] for entry in result.details["logs"]] == [f"{here}:{proxy.error_log}"]
    assert result.details["hosts_not_read"].keys() == {"app-1"}


async def test_our_probes_and_users_are_counted_apart(
    upstream: Callable[..., Any], nginx_proxy: Callable[..., Proxy]
) -> None:
    """A line's ``_bgw`` mark says it was badgateway's request (monitoring, another
    diagnosis): counted apart from users' requests, and never as this diagnosis's own."""
    proxy = nginx_proxy(upstream("refused"))
    assert get(proxy.url + "?_bgw=x0123456789ab") == 502  # a monitoring probe
    for _ in range(2):
        assert get(proxy.url + "cart?item=1") == 502  # users
    proxy.wait_for_log(r"(?s)(Connection refused.*){3}")
    result = await run_logs(LogSource(str(proxy.error_log)), url=proxy.url)
    [finding] = [f for f in result.findings if f.cause]
    assert finding.data["count"] == 3
    assert (finding.data["own"], finding.data["probes"], finding.data["users"]) == (0, 1, 2)
    assert (
        "2 from users" in finding.message and "1 from badgateway's other probes" in finding.message
    )


async def test_a_fifo_or_directory_is_reported_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "error.log"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it plainly would block for good
    started = time.monotonic()
    result = await asyncio.wait_for(
        run_logs(LogSource(str(fifo)), LogSource(str(tmp_path))), timeout=5
    )
    assert time.monotonic() - started < 2
    unreadable = [f for f in result.findings if f.code == "log_unreadable"]
    assert len(unreadable) == 2
    assert all("not a regular file" in f.message or "directory" in f.message for f in unreadable)
