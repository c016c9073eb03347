"""Shared fixtures. Each lab module registers its own fixtures as a pytest plugin."""

pytest_plugins = [
    "tests.lab.fixtures_upstreams",
    "tests.lab.fixtures_proxies",
    "tests.lab.fixtures_dns",
    "tests.lab.fixtures_netns",
    "tests.lab.fixtures_redis",
    "tests.lab.fixtures_slack",
]
