"""The test lab: real servers (proxies, upstreams, DNS, Redis) started on loopback ports."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout the tests run from
