"""Benchmark: how long a whole diagnosis takes, per step, in the cases that bound it.

Prints figures; asserts nothing (speed targets live here, not in timed tests). Traffic goes
only to loopback and to a network namespace this script creates (needs root for that case).

    .venv/bin/python -m bench.diagnosis_bench [--runs 3]

Cases: a 502 from nginx in front of a stopped app (the demo); quiet sites — nobody but
the diagnosis sends the proxy anything, so the logs step must wait for the diagnosis's own
requests to reach the log — behind nginx, HAProxy and Apache with each site's error log
configured; a healthy site; and a blackhole — a host behind a firewall that drops every
packet, so every probe times out, which is what the diagnosis budget must bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import ipaddress
import resource
import statistics
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from badgateway.bot.demo import demo_site
from badgateway.checks.model import Diagnosis
from badgateway.checks.runner import diagnose
from badgateway.checks.settings import LogSource, Settings, Site
from badgateway.checks.steps import step_names

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@contextlib.contextmanager
def healthy_site() -> Iterator[tuple[str, Settings]]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", Settings(allow_networks=LOOPBACK)
    finally:
        server.shutdown()


@contextlib.contextmanager
def blackhole_site() -> Iterator[tuple[str, Settings]]:
    from tests.lab.fixtures_netns import netns_lab_context

    with netns_lab_context() as lab, lab.firewall(80, "drop"), lab.firewall(443, "drop"):
        yield f"https://{lab.address}/", Settings(allow_networks=(lab.network,))


@contextlib.contextmanager
def demo() -> Iterator[tuple[str, Settings]]:
    with demo_site() as settings:
        yield "demo-shop", settings


def quiet_site(proxy: str, kind: str) -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """A real proxy in front of a misbehaving app, its log configured, no other traffic."""

    @contextlib.contextmanager
    def make() -> Iterator[tuple[str, Settings]]:
        from tests.lab.fixtures_proxies import start_apache, start_haproxy, start_nginx
        from tests.lab.fixtures_upstreams import Upstream

        starters: dict[str, Callable[..., Any]] = {
            "nginx": start_nginx,
            "haproxy": start_haproxy,
            "apache": start_apache,
        }
        with tempfile.TemporaryDirectory() as tmp, Upstream(kind) as app:
            server = starters[proxy](Path(tmp), app)
            try:
                site = Site(
                    name="shop",
                    url=server.url,
                    upstreams=(app.address,),
                    logs=(LogSource(str(server.error_log)),),
                )
                yield "shop", Settings(allow_networks=LOOPBACK, sites=(site,))
            finally:
                server.stop()

    return make


CASES: dict[str, Callable[[], contextlib.AbstractContextManager[tuple[str, Settings]]]] = {
    "502 behind nginx (demo)": demo,
    "quiet: nginx, app closes": quiet_site("nginx", "close_mid_response"),
    "quiet: HAProxy, app refuses": quiet_site("haproxy", "refused"),
    "quiet: Apache, app sends garbage": quiet_site("apache", "garbage"),
    "healthy": healthy_site,
    "blackhole (all probes time out)": blackhole_site,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    names = step_names()
    print(f"{'case':34} {'total ms':>9} " + " ".join(f"{n:>9}" for n in names) + "  cause")
    for label, make in CASES.items():
        try:
            with make() as (target, settings):
                settings = replace(settings, timeout_s=5.0)
                runs: list[Diagnosis] = [
                    asyncio.run(diagnose(target, settings)) for _ in range(args.runs)
                ]
        except Exception as exc:  # a case that cannot run here is reported, not fatal
            print(f"{label:34} skipped: {exc}")
            continue
        total = statistics.median(d.duration_ms for d in runs)
        per_step = [
            statistics.median(next(s.duration_ms for s in d.steps if s.name == n) for d in runs)
            for n in names
        ]
        cells = " ".join(f"{ms:>9.0f}" for ms in per_step)
        print(f"{label:34} {total:>9.0f} {cells}  {runs[-1].verdict.cause.value}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmedian of {args.runs} runs; timeout_s=5; peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
