"""The one rule for what an HTTP status says about the server that answered."""

from badgateway.checks.http_status import GATEWAY_STATUSES, server_failed


def test_a_5xx_is_a_failure_anything_else_an_answer() -> None:
    assert all(server_failed(s) for s in (500, 502, 503, 504, 521, 599))
    assert not any(server_failed(s) for s in (200, 301, 401, 403, 404, 429, 499))


def test_gateway_statuses_are_failures() -> None:
    assert all(server_failed(s) for s in GATEWAY_STATUSES)
    assert 500 not in GATEWAY_STATUSES
