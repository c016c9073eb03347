"""The failing sites the benchmark diagnoses, started once for every part: one real nginx
with a loopback port per site, in front of misbehaving upstreams (the app refuses, answers
garbage, or closes mid-response), all sites writing to nginx's one error log; and the lab's
BIND server, where the runbook site's name (``loop.test``) resolves.

``sites_toml(stack, names)`` writes the sites file a deployment runs with: loopback allowed,
the lab DNS server as the resolver, each site's nginx error log and upstream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.lab.fixtures_dns import LOOP, running_dns_lab
from tests.lab.fixtures_upstreams import Upstream
from tests.lab.shared_nginx import SharedNginx, running_shared_nginx

ALERTS_CHANNEL = "C0BENCHALERTS"
# The sites every part may use besides the storm's: one slash-command target per part, so
# that no part joins another's diagnosis (single-flight shares a run for 30 s).
NAMED_SITES = ("ackshop", "runbookshop", "askshop")
KINDS = ("refused", "garbage", "close_mid_response")


def storm_site(n: int) -> str:
    return f"site{n:03d}"


def behind(name: str) -> str:
    """Which upstream a site is behind: most refuse, some answer garbage, a few close."""
    if not name.startswith("site"):
        return "refused"
    n = int(name.removeprefix("site"))
    return "garbage" if n % 10 == 3 else "close_mid_response" if n % 25 == 7 else "refused"


@dataclass
class Stack:
    nginx: SharedNginx
    upstreams: dict[str, Upstream]
    resolver: str  # host:port of the lab's BIND server
    storm_sites: int

    def upstream_of(self, name: str) -> Upstream:
        return self.upstreams[behind(name)]

    def url(self, name: str) -> str:
        """The site's URL; the runbook site is reached by its name, resolved by the lab DNS."""
        url = self.nginx.url(name)
        return url.replace("127.0.0.1", LOOP) if name == "runbookshop" else url


@contextlib.contextmanager
def running_stack(directory: Path, storm_sites: int) -> Iterator[Stack]:
    upstreams = {kind: Upstream(kind).start() for kind in KINDS}
    names = [*NAMED_SITES, *(storm_site(n) for n in range(storm_sites))]
    (directory / "nginx").mkdir(parents=True)
    (directory / "dns").mkdir()
    try:
        with (
            running_shared_nginx(
                directory / "nginx", {name: upstreams[behind(name)].address for name in names}
            ) as nginx,
            running_dns_lab(directory / "dns") as dns,
        ):
            yield Stack(nginx, upstreams, dns.primary, storm_sites)
    finally:
        for upstream in upstreams.values():
            upstream.stop()


def sites_toml(stack: Stack, names: list[str]) -> str:
    """The sites file: scheduled probes an hour apart, so that monitoring never opens an
    incident of its own during a part."""
    text = f"""
[settings]
allow_networks = ["127.0.0.0/8"]
resolvers = ["{stack.resolver}"]
default_channel = "{ALERTS_CHANNEL}"
"""
    for name in names:
        text += f"""
[[site]]
name = "{name}"
url = "{stack.url(name)}"
upstreams = ["{stack.upstream_of(name).address}"]
logs = [{{ path = "{stack.nginx.error_log}", format = "nginx" }}]
interval_s = 3600
"""
    return text
