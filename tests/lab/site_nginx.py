"""A real nginx for the probe, reload and host tests: one plain and one TLS listener.

The TLS listener serves the lab CA's valid certificate for site.test, and a certificate for
other.test to clients that send another SNI name; both echo the Host header and SNI name
they got. The plain listener also serves redirects (same host, another host, a loop, to
https) and a 503.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.lab.certs import LabCerts, make_test_certs
from tests.lab.process import ManagedProcess, free_ports, require_binary, wait_for_port


@dataclass
class SiteNginx:
    process: ManagedProcess
    http_port: int
    https_port: int
    certs: LabCerts


def start_site_nginx(directory: Path, certs: LabCerts) -> SiteNginx:
    binary = require_binary("nginx", "/usr/sbin/nginx")
    http_port, https_port = free_ports(2)
    temp = " ".join(
        f"{name}_temp_path {directory}/tmp_{name};"
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    echo = 'return 200 "host=$host sni=$ssl_server_name\\n";'
    conf = f"""worker_processes 1;
error_log {directory}/error.log warn;
pid {directory}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {directory}/access.log;
    {temp}
    add_header X-Request-ID $request_id always;
    server {{
        listen 127.0.0.1:{http_port};
        location = / {{ {echo} }}
        location = /final {{ return 200 "final\\n"; }}
        location = /to-final {{ return 302 /final; }}
        location = /loop {{ return 302 /loop; }}
        location = /to-localhost {{ return 302 http://localhost:{http_port}/final; }}
        location = /to-https {{ return 301 https://site.test:{https_port}/; }}
        location = /fail {{ return 503 "down\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl default_server;
        ssl_certificate {certs.wrong_host.cert};
        ssl_certificate_key {certs.wrong_host.key};
        location / {{ {echo} }}
    }}
    server {{
        listen 127.0.0.1:{https_port} ssl;
        server_name site.test;
        ssl_certificate {certs.valid.cert};
        ssl_certificate_key {certs.valid.key};
        location / {{ {echo} }}
    }}
}}
"""
    (directory / "nginx.conf").write_text(conf)
    process = ManagedProcess(
        [binary, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-g", "daemon off;"],
        directory / "stdout.log",
    )
    try:
        wait_for_port(http_port)
        wait_for_port(https_port)
    except TimeoutError:
        process.stop()
        raise RuntimeError(f"nginx did not start: {process.output()}") from None
    return SiteNginx(process, http_port, https_port, certs)


@contextlib.contextmanager
def running_site_nginx(directory: Path) -> Iterator[SiteNginx]:
    """Test certificates made in ``directory``, the site started, and always stopped."""
    server = start_site_nginx(directory, make_test_certs(directory / "certs"))
    try:
        yield server
    finally:
        server.process.stop()
