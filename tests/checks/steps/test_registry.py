"""The step registry (checks.steps): what a step declares about itself."""

from badgateway.checks.model import StepResult
from badgateway.checks.steps import ANYWHERE, all_steps, step_named
from badgateway.checks.steps.dns import evidence as dns_evidence
from badgateway.checks.steps.firewall import evidence as firewall_evidence


def test_every_step_has_a_distinct_name_and_order() -> None:
    steps = all_steps()
    assert len({s.name for s in steps}) == len(steps)
    assert [s.order for s in steps] == sorted({s.order for s in steps})


def test_the_logs_step_declares_the_queues_of_its_parts() -> None:
    logs = step_named("logs")
    assert logs is not None and logs.parts is not None
    assert logs.parts.queue_at("web-1") == "logs@web-1"
    assert logs.parts.queue_at(ANYWHERE) is None  # any worker's queue


def test_every_step_of_the_runbook_reads_its_own_evidence() -> None:
    assert all(s.evidence is not None for s in all_steps())


def test_dns_evidence_is_one_line_per_resolver() -> None:
    resolver = {
        "resolver": "127.0.0.1:5353",
        "status": "ok",
        "addresses": ["192.0.2.1", "192.0.2.2"],
        "cname_chain": ["shop.example", "lb.example"],
        "ttl_max": 300,
        "elapsed_ms": 3,
        "error": None,
    }
    timeout: dict[str, object] = {
        "resolver": "10.0.0.9",
        "status": "timeout",
        "addresses": [],
        "elapsed_ms": None,
    }
    result = StepResult.from_findings("dns", "x", [], details={"resolvers": [resolver, timeout]})
    assert dns_evidence(result) == [
        "127.0.0.1:5353: ok → 192.0.2.1, 192.0.2.2 via shop.example → lb.example · TTL 300 s "
        "(3 ms)",
        "10.0.0.9: timeout → timeout (?)",
    ]


def test_firewall_evidence_without_tls_shows_tcp_and_upstreams() -> None:
    details = {
        "edge": [{"address": "192.0.2.1", "port": 443, "state": "open", "ms": 3, "error": None}],
        "tls": {},
        "upstreams": [
            {"upstream": "app:80", "connect": None, "http": None, "resolve_error": "no name"}
        ],
    }
    result = StepResult.from_findings("firewall", "x", [], details=details)
    assert firewall_evidence(result) == [
        "TCP 192.0.2.1:443 → open (3 ms)",
        "upstream app:80 → no name (?)",
    ]
