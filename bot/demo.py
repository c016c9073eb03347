"""`badgateway demo`: a real failing site on this machine, diagnosed end to end.

Starts Debian's nginx on a loopback port in front of an app port where nothing listens
(the classic 502), then runs the whole diagnosis against it with the proxy's error log
and upstream configured, as a sites file would. Needs no Slack, no Redis, no network.
(``demo_site`` is the site; bot.assemble.terminal runs the diagnosis and shows it.)
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from badgateway.checks.settings import LogSource, Settings, Site

_NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp;
    proxy_temp_path {dir}/tmp;
    fastcgi_temp_path {dir}/tmp;
    uwsgi_temp_path {dir}/tmp;
    scgi_temp_path {dir}/tmp;
    server {{
        listen 127.0.0.1:{port};
        server_name shop.demo;
        location / {{ proxy_pass http://127.0.0.1:{app_port}; }}
    }}
}}
"""


class DemoUnavailable(RuntimeError):
    """The demo cannot run here (no nginx); the message says what to install."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


@contextlib.contextmanager
def demo_site() -> Iterator[Settings]:
    """Run nginx in front of a stopped app; yield settings with the site 'demo-shop'."""
    nginx = _nginx_binary()
    if nginx is None:
        raise DemoUnavailable(
            "badgateway demo needs nginx (Debian: apt-get install nginx-light, or run "
            "scripts/quickstart, which installs it)"
        )
    with tempfile.TemporaryDirectory(prefix="badgateway-demo-") as tmp:
        work = Path(tmp)
        (work / "tmp").mkdir()
        port, app_port = _free_port(), _free_port()
        (work / "nginx.conf").write_text(_NGINX_CONF.format(dir=work, port=port, app_port=app_port))
        proc = subprocess.Popen(
            [nginx, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            if not _wait_for_port(port):
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise DemoUnavailable(f"nginx did not start: {err.strip()}")
            # No visit first: the diagnosis's own requests put the errors in nginx's log.
            site = Site(
                name="demo-shop",
                url=f"http://127.0.0.1:{port}/",
                upstreams=(f"127.0.0.1:{app_port}",),
                logs=(LogSource(path=str(work / "error.log"), format="nginx"),),
            )
            yield Settings(
                allow_networks=(ipaddress.ip_network("127.0.0.0/8"),),
                timeout_s=3.0,
                sites=(site,),
            )
        finally:
            proc.terminate()
            proc.wait(5)
