"""Lab fixture: a real Varnish (Debian's varnishd 7.1) in front of an upstream, with the two
programs that turn its shared-memory log (VSL) into files badgateway reads.

Varnish has no error log: why a backend fetch failed is only in the VSL, as ``FetchError``
records. The fixture runs, each as an ordinary process on a loopback port picked at run
time, never as a system service::

    def test_x(upstream, varnish_proxy):
        app = upstream("refused")
        varnish = varnish_proxy(app)        # one backend "app" = the upstream
        varnish.url                         # "http://127.0.0.1:PORT/"
        varnish.error_log                   # varnishlog's text file (format "varnish")
        varnish.access_log                  # varnishncsa's file, in logparse.varnish's format

- ``varnishd -F`` with its own ``-n`` working directory, a VCL whose one backend is the
  upstream with short timeouts, and a small malloc storage;
- ``varnishlog -g request -q QUERY -A -u -a -w FILE``: text (``-A``), unbuffered (``-u``:
  each transaction is in the file as soon as it ends), one block per client request with
  its backend fetch nested in it (``-g request``), only the failed ones (``-q``);
- ``varnishncsa -b -F NCSA_FORMAT -w FILE``: one line per backend fetch.

Options (keyword): ``connect_timeout_s=1``, ``first_byte_timeout_s=1``,
``between_bytes_timeout_s=1``, ``max_connections=0`` (0 = no limit; a full backend logs
"backend app: busy"), ``query=LOG_QUERY`` (None: log every request), ``grouping="request"``
(varnishlog's -g), ``params=None`` (more ``varnishd -p NAME=VALUE``). The factory returns
once both loggers are attached to the running child, so the first request is logged.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from badgateway.checks.logparse.varnish import NCSA_FORMAT
from tests.lab.fixtures_proxies import Proxy, proxy_factory, tmp_dirs
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.process import ManagedProcess, free_port, require_binary, wait_for_port

# The failed requests only: a fetch that failed, or a 5xx the client got (the app's own or
# Varnish's). The file stays small on a busy cache and still holds every 502-like event.
LOG_QUERY = "FetchError or RespStatus >= 500"
BACKEND_NAME = "app"
_ATTACH_TIMEOUT_S = 10.0


@dataclass
class VarnishProxy(Proxy):
    """A varnishd with its varnishlog and varnishncsa; all three stop together."""

    workdir: Path = Path()  # varnishd's -n directory (outside pytest's private tmp)
    loggers: list[ManagedProcess] = field(default_factory=list)

    @property
    def instance(self) -> str:
        """The ``-n`` argument for varnishlog, varnishncsa, varnishadm... on this instance."""
        return str(self.workdir / "instance")

    def stop(self) -> None:
        # The loggers first: they would otherwise sit waiting for the instance to come back.
        for logger in self.loggers:
            logger.stop()
        super().stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _host_port(upstream: Upstream | str) -> tuple[str, str]:
    address = upstream.address if isinstance(upstream, Upstream) else upstream
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def _vcl(
    upstream: Upstream | str,
    connect_timeout_s: float,
    first_byte_timeout_s: float,
    between_bytes_timeout_s: float,
    max_connections: int,
) -> str:
    host, port = _host_port(upstream)
    limit = f"    .max_connections = {max_connections};\n" if max_connections else ""
    return f"""vcl 4.1;

backend {BACKEND_NAME} {{
    .host = "{host}";
    .port = "{port}";
    .connect_timeout = {connect_timeout_s}s;
    .first_byte_timeout = {first_byte_timeout_s}s;
    .between_bytes_timeout = {between_bytes_timeout_s}s;
{limit}}}
"""


def _attached(logger: ManagedProcess) -> bool:
    """The logger has mapped the running child's log segment: from now on every
    transaction reaches it (it reads from the tail, so earlier ones never do)."""
    try:
        maps = Path(f"/proc/{logger.proc.pid}/maps").read_text()
    except OSError:
        return False
    return "/_.vsm_child/_.Log." in maps


def _wait_attached(proxy: VarnishProxy) -> None:
    deadline = time.monotonic() + _ATTACH_TIMEOUT_S
    pending = list(proxy.loggers)
    while pending:
        pending = [logger for logger in pending if not _attached(logger)]
        dead = [logger for logger in pending if logger.proc.poll() is not None]
        if dead or (pending and time.monotonic() > deadline):
            outputs = "\n".join(f"{p.argv[0]}: {p.output()[-2000:]}" for p in pending)
            varnishd = proxy.process.output()[-3000:]
            proxy.stop()
            raise RuntimeError(f"varnish loggers did not attach:\n{outputs}\n{varnishd}")
        if pending:
            time.sleep(0.05)


def start_varnish(
    directory: Path,
    upstream: Upstream | str,
    *,
    connect_timeout_s: float = 1,
    first_byte_timeout_s: float = 1,
    between_bytes_timeout_s: float = 1,
    max_connections: int = 0,
    query: str | None = LOG_QUERY,
    grouping: str = "request",
    params: Mapping[str, str] | None = None,
) -> VarnishProxy:
    varnishd = require_binary("varnishd", "/usr/sbin/varnishd")
    varnishlog = require_binary("varnishlog", "/usr/bin/varnishlog")
    varnishncsa = require_binary("varnishncsa", "/usr/bin/varnishncsa")
    directory.mkdir(parents=True, exist_ok=True)
    # Run as root, varnishd drops to its own users (varnish compiles the VCL, vcache serves),
    # who must reach the -n directory: pytest's tmp dirs are private to root.
    workdir = Path(tempfile.mkdtemp(prefix="bg-varnish-"))
    workdir.chmod(0o755)
    vcl = workdir / "lab.vcl"
    vcl.write_text(
        _vcl(
            upstream,
            connect_timeout_s,
            first_byte_timeout_s,
            between_bytes_timeout_s,
            max_connections,
        )
    )
    port = free_port()
    instance = str(workdir / "instance")
    process = ManagedProcess(
        [
            varnishd,
            "-F",
            "-n", instance,
            "-a", f"127.0.0.1:{port}",
            "-f", str(vcl),
            "-s", "malloc,16m",
            "-l", "2m",  # the VSL ring: 80 MB by default, far more than a test writes
            "-T", "none",  # no management CLI port
            "-p", "thread_pools=1",
            "-p", "thread_pool_min=5",
            *(arg for name, value in (params or {}).items() for arg in ("-p", f"{name}={value}")),
        ],
        directory / "varnishd.out",
    )  # fmt: skip
    error_log, ncsa_log = directory / "varnishlog.log", directory / "varnishncsa.log"
    proxy = VarnishProxy(
        kind="varnish",
        log_format="varnish",
        directory=directory,
        error_log=error_log,
        process=process,
        port=port,
        access_log=ncsa_log,
        workdir=workdir,
    )
    try:
        wait_for_port(port, timeout=15)
    except TimeoutError:
        output = process.output()
        proxy.stop()
        raise RuntimeError(f"varnishd did not start:\n{output}") from None
    filters = ["-q", query] if query else []
    proxy.loggers += [
        ManagedProcess(
            [varnishlog, "-n", instance, "-g", grouping, *filters, "-A", "-u", "-a",
             "-w", str(error_log)],
            directory / "varnishlog.out",
        ),
        ManagedProcess(
            [varnishncsa, "-n", instance, "-b", "-F", NCSA_FORMAT, "-a", "-w", str(ncsa_log)],
            directory / "varnishncsa.out",
        ),
    ]  # fmt: skip
    _wait_attached(proxy)
    return proxy


@pytest.fixture
def varnish_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., VarnishProxy]]:
    """``varnish_proxy(upstream, **opts) -> VarnishProxy``; stopped at the end of the test."""
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "varnish"), start_varnish)


@pytest.fixture(scope="module")
def module_varnish_proxy(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., VarnishProxy]]:
    yield from proxy_factory(tmp_dirs(tmp_path_factory, "varnish"), start_varnish)
