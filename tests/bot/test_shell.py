"""`badgateway shell`: the same bot in a terminal, against a real failing site on loopback."""

from __future__ import annotations

import io
import ipaddress
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from badgateway.bot.assemble.terminal import run_shell
from badgateway.checks.settings import Settings
from badgateway.checks.steps import all_steps


class _BadGateway(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html><center><h1>502 Bad Gateway</h1></center></html>"
        self.send_response(502)
        self.send_header("Server", "nginx/1.22.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def bad_gateway_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _settings(**extra: object) -> Settings:
    return Settings(
        allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        reload_attempts=1,
        reload_spacing_s=0,
        timeout_s=2,
        diagnosis_budget_s=8,
        **extra,  # type: ignore[arg-type]
    )


def _shell(settings: Settings, lines: list[str]) -> str:
    out = io.StringIO()
    assert run_shell(settings, io.StringIO("\n".join(lines) + "\n"), out) == 0
    return out.getvalue()


def test_shell_shows_the_thread_and_presses_buttons(bad_gateway_url: str) -> None:
    text = _shell(
        # The allow-lists are Slack's; the person at the terminal is not refused.
        _settings(allowed_users=("U0SOMEONE",)),
        [f"/502 {bad_gateway_url}", "press take", "press escalate", "press resolve", "quit"],
    )
    assert f"▌ 502 diagnosis: {bad_gateway_url}" in text
    assert "⏳" in text  # the root as first posted: every check pending
    thread = [line for line in text.splitlines() if line.startswith("  │ ")]
    names = [s.name for s in all_steps()]
    seen = [n for n in names if any(f"(`{n}`)" in line for line in thread)]
    assert seen == names  # every check replied in the thread, in runbook order
    assert any("Verdict:" in line for line in thread)
    assert "(press rerun | take | escalate | resolve)" in text
    assert "@you is on it" in text
    assert "Summary to send them" in text and f"Site: {bad_gateway_url}" in text
    assert "resolved by @you" in text


def test_shell_refuses_bad_targets_and_unknown_input() -> None:
    text = _shell(
        _settings(), ["/502 not a host", "/502 http://10.1.2.3/", "press take", "frobnicate"]
    )
    assert "without spaces" in text
    assert "private address" in text
    assert "There is no verdict to press yet" in text
    assert "Unknown command 'frobnicate'" in text
    assert "▌ 502 diagnosis" not in text


def test_shell_mention_rerun_one_check(bad_gateway_url: str) -> None:
    names = [s.name for s in all_steps()]
    if not names:
        pytest.skip("no checks installed")
    text = _shell(_settings(), [f"/502 {bad_gateway_url}", f"@badgateway rerun {names[-1]}"])
    assert f"@you re-runs the {names[-1]} check" in text
    assert text.count("Verdict:") >= 2
