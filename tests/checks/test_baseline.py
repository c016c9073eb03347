"""checks.baseline: the snapshot of a diagnosis, built from its steps' details alone."""

from __future__ import annotations

from typing import Any

import pytest

from badgateway.checks.baseline import Snapshot, SnapshotError, snapshot_of
from badgateway.checks.model import Cause, Diagnosis, Status, StepResult, Verdict


def attempt(status: int, server: str, *, body: str = "", mark: str = "d1.1") -> dict[str, Any]:
    return {
        "status": status,
        "headers": {"server": server, "x-powered-by": "PHP/8.2.7"},
        "body_excerpt": body,
        "phases": {"connect": 1.0, "first_byte": 20.0 if mark.endswith("1") else 30.0},
        "redirects": [{"url": f"http://shop.test/?_bgw={mark}", "status": 301}],
    }


def shop_diagnosis(started_at: str = "2026-12-01T12:01:00+00:00") -> Diagnosis:
    page = '<head><meta name="generator" content="WordPress 6.4.2" /></head>'
    steps = [
        StepResult(
            "dns",
            Status.OK,
            "",
            details={
                "resolvers": [
                    {
                        "resolver": "127.0.0.1:53",
                        "status": "ok",
                        "addresses": ["198.51.100.2", "192.0.2.7"],
                        "cname_chain": ["shop.test", "edge.cdn.test"],
                        "ttl_max": 3600,
                    },
                    {"resolver": "127.0.0.2:53", "status": "timeout", "addresses": []},
                ]
            },
        ),
        StepResult(
            "firewall",
            Status.OK,
            "",
            details={
                "edge": [
                    {"address": "192.0.2.7", "port": 443, "state": "open"},
                    {"address": "198.51.100.2", "port": 443, "state": "unfinished"},
                ],
                "tls": {
                    "address": "192.0.2.7",
                    "fingerprint": "ab" * 32,
                    "certificate": {"issuer": "CN=Lab CA", "san": ["DNS:shop.test"]},
                },
                "upstreams": [
                    {"address": "10.0.0.5", "port": 9000, "connect": {"state": "open"}},
                    {"address": "/run/php.sock", "port": None, "connect": {"state": "refused"}},
                ],
            },
        ),
        StepResult(
            "reload",
            Status.OK,
            "",
            details={
                "producer": "nginx",
                "attempts": [
                    attempt(200, "nginx/1.22.1", body=page, mark="d1.1"),
                    attempt(200, "nginx/1.22.1", body=page, mark="d1.2"),
                    {"status": None, "headers": {}, "error": {"kind": "timeout"}},
                ],
            },
        ),
        StepResult(
            "logs",
            Status.OK,
            "",
            details={
                "logs": [  # nginx's error and access logs, and a log naming no upstream
                    {"format": "nginx", "own_upstreams": {"10.0.0.5:9000": 1}},
                    {"format": "nginx", "own_upstreams": {"10.0.0.6:9000": 2}},
                    {"format": "php-fpm", "own_upstreams": {}},
                ]
            },
        ),
    ]
    verdict = Verdict(Cause.HEALTHY, "fine", [])
    return Diagnosis("shop", "https://shop.test/", verdict, steps, 900, started_at, site="shop")


def test_a_snapshot_holds_the_facts_the_steps_recorded() -> None:
    snapshot = snapshot_of(shop_diagnosis())
    assert snapshot.target == "shop" and snapshot.healthy and snapshot.cause == "healthy"
    assert snapshot.facts == {
        "dns.answer@127.0.0.1:53": "ok",
        "dns.addresses@127.0.0.1:53": "192.0.2.7, 198.51.100.2",
        "dns.cname@127.0.0.1:53": "shop.test → edge.cdn.test",
        "dns.answer@127.0.0.2:53": "timeout",
        "edge@192.0.2.7:443": "open",  # the unfinished probe says nothing either way
        "tls.certificate": "ab" * 32,
        "upstream@10.0.0.5:9000": "open",
        "upstream@/run/php.sock": "refused",
        "http.producer": "nginx",
        "header.server": "nginx/1.22.1",
        "header.x-powered-by": "PHP/8.2.7",
        "generator": "WordPress 6.4.2",
        "http.redirects": "301 http://shop.test/",  # without the run's own mark
        # Where nginx sent our requests, as its logs say, whichever log said it.
        "proxy.upstream@nginx": "10.0.0.5:9000, 10.0.0.6:9000",
    }
    # What varies from run to run without being a change is context, never compared.
    assert snapshot.context["ttl@127.0.0.1:53"] == 3600
    assert snapshot.context["status"] == 200
    assert snapshot.context["phases_ms"] == {"connect": 1, "first_byte": 25}
    assert snapshot.context["tls.issuer"] == "CN=Lab CA"


def test_two_runs_of_an_unchanged_site_have_the_same_facts() -> None:
    first = snapshot_of(shop_diagnosis("2026-12-01T12:01:00+00:00"))
    second = snapshot_of(shop_diagnosis("2026-12-01T12:09:00+00:00"))
    assert first.facts == second.facts


def test_a_snapshot_round_trips_through_json_and_refuses_other_versions() -> None:
    snapshot = snapshot_of(shop_diagnosis(), run="req-1")
    assert Snapshot.from_dict(snapshot.to_dict()) == snapshot
    assert Snapshot.from_dict(snapshot.to_dict()).run == "req-1"
    for bad in ({**snapshot.to_dict(), "version": 2}, {"version": 1}, ["not", "a", "dict"]):
        with pytest.raises(SnapshotError):
            Snapshot.from_dict(bad)
