"""One real nginx serving several sites, each on its own loopback port with its own upstream,
all writing to one error log — nginx's default, and what the logs step must read per site.

::

    with running_shared_nginx(tmp_path, {"slow": slow_app.address, "down": down_app.address},
                              deny=("private",)) as ngx:
        ngx.url("slow")          # "http://127.0.0.1:PORT/"
        ngx.error_log            # the one log every site writes to

A site named in ``deny`` answers every request with nginx's own 403 (``deny all``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.lab.process import ManagedProcess, free_ports, require_binary, wait_for_port


@dataclass
class SharedNginx:
    process: ManagedProcess
    ports: dict[str, int]
    error_log: Path

    def url(self, site: str) -> str:
        return f"http://127.0.0.1:{self.ports[site]}/"


def start_shared_nginx(
    directory: Path, upstreams: Mapping[str, str], deny: tuple[str, ...] = ()
) -> SharedNginx:
    binary = require_binary("nginx", "/usr/sbin/nginx")
    ports = dict(zip(upstreams, free_ports(len(upstreams)), strict=True))
    temp = " ".join(
        f"{name}_temp_path {directory}/tmp_{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    servers = "\n".join(
        f"""    server {{
        listen 127.0.0.1:{ports[name]};
        server_name {name};
        location / {{
            {"deny all;" if name in deny else ""}
            proxy_pass http://{address};
            proxy_connect_timeout 1s;
            proxy_read_timeout 1s;
        }}
    }}"""
        for name, address in upstreams.items()
    )
    error_log = directory / "error.log"
    # Each listening port takes a connection slot, and each proxied request two (client and
    # upstream) while it lasts: a storm's hundreds of sites diagnosed at once on a loaded
    # machine overlapped past 2 a site, and nginx, "reusing connections", closed requests
    # mid-way — a refused site then read as one whose upstream closed. Room as a real
    # proxy for hundreds of sites has it.
    connections = 64 + 16 * len(ports)
    conf = f"""worker_processes 1;
worker_rlimit_nofile {2 * connections};
error_log {error_log} warn;
pid {directory}/nginx.pid;
events {{ worker_connections {connections}; }}
http {{
    access_log {directory}/access.log;
    {temp}
{servers}
}}
"""
    (directory / "nginx.conf").write_text(conf)
    process = ManagedProcess(
        [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        directory / "stdout.log",
    )
    try:
        for port in ports.values():
            wait_for_port(port)
    except TimeoutError:
        output = process.output()
        process.stop()
        raise RuntimeError(f"nginx did not start:\n{output}") from None
    return SharedNginx(process, ports, error_log)


@contextlib.contextmanager
def running_shared_nginx(
    directory: Path, upstreams: Mapping[str, str], deny: tuple[str, ...] = ()
) -> Iterator[SharedNginx]:
    nginx = start_shared_nginx(directory, upstreams, deny)
    try:
        yield nginx
    finally:
        nginx.process.stop()
