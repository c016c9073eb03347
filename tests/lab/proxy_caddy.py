"""Lab fixture: a real Caddy 2 reverse proxy, started as an ordinary foreground process
(``caddy run``) in its own tmp directory, on a loopback port picked at run time.

::

    def test_x(upstream, caddy_proxy):
        app = upstream("refused")
        caddy = caddy_proxy(app)            # reverse_proxy to app.address
        caddy.url, caddy.port               # "http://127.0.0.1:PORT/"
        caddy.error_log                     # Caddy's default log (JSON lines): http.log.error
        caddy.access_log                    # the site's access log (JSON lines)

Caddy writes a failed proxied request's error (the Go error text, e.g. "dial tcp ...:
connect: connection refused") through the logger ``http.log.error`` (``http.log.error.log0``
when the site has a ``log`` directive, as here) at level ERROR, into the *default* log; the
site's ``log`` directive only takes the access lines ("handled request", ``status``).
``reverse_proxy``'s own logger (``http.handlers.reverse_proxy``) says more per attempt
("upstream roundtrip" with the dialled ``upstream``) at DEBUG only. So ``error_log`` is the
default log, in JSON, at ``level`` (INFO, Caddy's default, unless asked for).

Caddy runs with ``admin off``, ``auto_https off`` and HOME / XDG_DATA_HOME /
XDG_CONFIG_HOME inside the tmp directory, so it opens no admin port, asks no ACME server
and writes nothing outside that directory (its autosave.json lands there too).

Options (all keyword): ``dial_timeout_s=1``, ``response_header_timeout_s=1``,
``max_response_header=None`` (e.g. "16KiB"; Go's default is 10 MB), ``https=False``
(``transport http { tls }``: TLS to the upstream), ``tls_trusted_ca=None`` (a CA file the
upstream certificate must chain to), ``tls_server_name=None``, ``resolvers=None`` (a list of
"127.0.0.1:PORT" DNS servers Caddy resolves the upstream name through, never the system's),
``max_fails=0`` / ``fail_duration_s=0`` (passive health checks: an upstream that failed is
held down, so the next request finds "no upstreams available"), ``health_interval_s=0``
(active health checks of "/" at that interval; 0 = none), ``level="INFO"``,
``encoder="json"`` (or "console"), ``time_format=None`` (Caddy's default: float epoch
seconds; e.g. "iso8601", "rfc3339"), ``site_log=True`` (the ``log`` directive and its
access log), ``user=None`` (run Caddy as this user, e.g. Debian's "caddy", as its service
does; its directory is then a world-traversable one of its own, since pytest's tmp dirs are
private to root, and is removed at stop). ``upstream`` may be an ``Upstream``, a
"host:port" string, "unix//path.sock", or a list of them.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.lab.fixtures_proxies import Proxy, UpstreamSpec, proxy_factory, tmp_dirs
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import ManagedProcess, free_port, require_binary

READY_TIMEOUT_S = 10.0


@dataclass
class CaddyProxy(Proxy):
    own_directory: bool = False  # made for a ``user``: removed at stop

    def stop(self) -> None:
        super().stop()
        if self.own_directory:
            shutil.rmtree(self.directory, ignore_errors=True)


def _addresses(spec: UpstreamSpec) -> list[str]:
    items = [spec] if isinstance(spec, Upstream | str) else list(spec)
    return [item.address if isinstance(item, Upstream) else item for item in items]


def _duration(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"


def _transport(
    *,
    dial_timeout_s: float,
    response_header_timeout_s: float,
    max_response_header: str | None,
    https: bool,
    tls_trusted_ca: Path | None,
    tls_server_name: str | None,
    resolvers: Sequence[str] | None,
) -> str:
    lines = [
        f"dial_timeout {_duration(dial_timeout_s)}",
        f"response_header_timeout {_duration(response_header_timeout_s)}",
    ]
    if max_response_header is not None:
        lines.append(f"max_response_header {max_response_header}")
    if https:
        lines.append("tls")
    if tls_trusted_ca is not None:
        lines.append(f"tls_trusted_ca_certs {tls_trusted_ca}")
    if tls_server_name is not None:
        lines.append(f"tls_server_name {tls_server_name}")
    if resolvers:
        lines.append("resolvers " + " ".join(resolvers))
    return "\n\t\t\t".join(lines)


def caddyfile(
    *,
    port: int,
    upstreams: list[str],
    error_log: Path,
    access_log: Path | None,
    level: str = "INFO",
    encoder: str = "json",
    time_format: str | None = None,
    max_fails: int = 0,
    fail_duration_s: float = 0,
    health_interval_s: float = 0,
    **transport: Any,
) -> str:
    """The Caddyfile of one lab site: ``http://:PORT`` bound to 127.0.0.1, proxying to
    ``upstreams``, logging as the module docstring says."""
    encoding = f"{encoder} {{\n\t\t\ttime_format {time_format}\n\t\t}}" if time_format else encoder
    site_log = ""
    if access_log is not None:
        site_log = f"\tlog {{\n\t\toutput file {access_log}\n\t\tformat {encoding}\n\t}}\n"
    health = ""
    if max_fails:
        health += f"\t\tmax_fails {max_fails}\n\t\tfail_duration {_duration(fail_duration_s)}\n"
    if health_interval_s:
        interval = _duration(health_interval_s)
        health += (
            f"\t\thealth_uri /\n\t\thealth_interval {interval}\n\t\thealth_timeout {interval}\n"
        )
    return f"""{{
	admin off
	auto_https off
	grace_period 1s
	log {{
		output file {error_log}
		format {encoding}
		level {level}
	}}
}}

http://:{port} {{
	bind 127.0.0.1
{site_log}	reverse_proxy {" ".join(upstreams)} {{
{health}		transport http {{
			{_transport(**transport)}
		}}
	}}
}}
"""


def _wait_ready(proxy: CaddyProxy, timeout: float = READY_TIMEOUT_S) -> None:
    """Until Caddy accepts connections; fail at once, with its output, if it exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((proxy.host, proxy.port), timeout=0.2):
                return
        except OSError:
            pass
        exited = proxy.process.proc.poll() is not None
        if exited or time.monotonic() > deadline:
            output = proxy.process.output()
            proxy.stop()
            why = "exited" if exited else f"did not listen after {timeout} s"
            raise RuntimeError(
                f"caddy {why}:\n{output[-3000:]}\n{proxy.read_log()[-3000:]}\n"
                f"Caddyfile:\n{(proxy.directory / 'Caddyfile').read_text()}"
            )
        time.sleep(0.05)


def start_caddy(
    directory: Path,
    upstream: UpstreamSpec,
    *,
    dial_timeout_s: float = 1,
    response_header_timeout_s: float = 1,
    max_response_header: str | None = None,
    https: bool = False,
    tls_trusted_ca: Path | None = None,
    tls_server_name: str | None = None,
    resolvers: Sequence[str] | None = None,
    max_fails: int = 0,
    fail_duration_s: float = 0,
    health_interval_s: float = 0,
    level: str = "INFO",
    encoder: str = "json",
    time_format: str | None = None,
    site_log: bool = True,
    user: str | None = None,
) -> CaddyProxy:
    binary = require_binary("caddy", "/usr/bin/caddy")
    if user is not None:
        directory = Path(tempfile.mkdtemp(prefix="bg-caddy-"))
        directory.chmod(0o755)
        shutil.chown(directory, user, user)
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    error_log = directory / "caddy.log"
    access_log = directory / "access.log" if site_log else None
    conf = caddyfile(
        port=port,
        upstreams=_addresses(upstream),
        error_log=error_log,
        access_log=access_log,
        level=level,
        encoder=encoder,
        time_format=time_format,
        max_fails=max_fails,
        fail_duration_s=fail_duration_s,
        health_interval_s=health_interval_s,
        dial_timeout_s=dial_timeout_s,
        response_header_timeout_s=response_header_timeout_s,
        max_response_header=max_response_header,
        https=https,
        tls_trusted_ca=tls_trusted_ca,
        tls_server_name=tls_server_name,
        resolvers=resolvers,
    )
    (directory / "Caddyfile").write_text(conf)
    # Caddy keeps certificates, locks and autosave.json under these: all inside the tmp dir.
    env = {
        **os.environ,
        "HOME": str(directory),
        "XDG_DATA_HOME": str(directory / "data"),
        "XDG_CONFIG_HOME": str(directory / "config"),
    }
    as_user: dict[str, object] = {"user": user, "group": user} if user is not None else {}
    process = ManagedProcess(
        [binary, "run", "--config", str(directory / "Caddyfile"), "--adapter", "caddyfile"],
        directory / "stdout.log",
        env=env,
        cwd=str(directory),
        **as_user,
    )
    proxy = CaddyProxy(
        "caddy",
        "caddy",
        directory,
        error_log,
        process,
        port,
        access_log=access_log,
        own_directory=user is not None,
    )
    _wait_ready(proxy)
    return proxy


@pytest.fixture
def caddy_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., CaddyProxy]]:
    """``caddy_proxy(upstream, **opts) -> Proxy``; stopped at the end of the test."""
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "caddy"), start_caddy)


@pytest.fixture(scope="module")
def module_caddy_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., CaddyProxy]]:
    """Like ``caddy_proxy``, but the servers live for the whole test module."""
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "caddy"), start_caddy)
