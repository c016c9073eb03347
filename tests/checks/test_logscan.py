"""checks.logscan: where the proxy sent the diagnosis's own requests, as its lines say."""

from __future__ import annotations

from datetime import datetime, timedelta

from badgateway.checks.log_owner import LineOwners
from badgateway.checks.logscan import LogScan, scan_lines
from badgateway.checks.settings import Site


def test_only_our_requests_say_where_the_proxy_sent_them() -> None:
    site = Site(name="lab", url="http://127.0.0.1:8080/")
    owners = LineOwners.of(site, (site,), "d1")
    now = datetime.now().astimezone()
    stamp, err = now.strftime("%d/%b/%Y:%H:%M:%S %z"), now.strftime("%Y/%m/%d %H:%M:%S")

    def access(query: str, upstream: str) -> str:
        return (
            f'127.0.0.1 - - [{stamp}] "GET /{query} HTTP/1.1" 200 3 "-" "x" '
            f"upstream_addr={upstream}"
        )

    lines = [
        access("?_bgw=d1.1", "10.0.0.5:9000, 10.0.0.6:9000"),  # ours: tried both
        access("", "10.0.0.7:9000"),  # a user's
        access("?_bgw=d2.1", "10.0.0.8:9000"),  # another diagnosis's
        # Ours, but a consequence: it names the pool, not a server it tried.
        f"{err} [error] 7#7: *9 no live upstreams while connecting to upstream, client: "
        '127.0.0.1, server: lab, request: "GET /?_bgw=d1.2 HTTP/1.1", upstream: '
        '"http://app/", host: "127.0.0.1:8080"',
    ]
    scan = scan_lines(lines, "nginx", now - timedelta(minutes=1), owners=owners)
    assert scan.own_seen == {"d1.1", "d1.2"} and scan.request_log
    assert scan.own_upstreams == {"10.0.0.5:9000": 1, "10.0.0.6:9000": 1}
    again = LogScan.from_dict(scan.to_dict())
    assert (again.own_upstreams, again.request_log) == (scan.own_upstreams, True)
