"""The DNS client (checks.dns_client): A and AAAA through one resolver, put together."""

from badgateway.checks.dns_client import FAILED, Answer, Lookup, Source, _combine


def test_any_address_is_an_answer() -> None:
    a = Lookup(status=Answer.OK, addresses=["192.0.2.1"], chain=["shop.example"])
    aaaa = Lookup(status=Answer.TIMEOUT, error="no answer in time")
    report = _combine("10.0.0.2", Source.SETTINGS, [a, aaaa], 4)
    assert report.status is Answer.OK and report.answered and report.error is None
    assert report.to_dict()["status"] == "ok" and report.to_dict()["source"] == "settings"


def test_nxdomain_outranks_a_failed_lookup_of_the_other_type() -> None:
    a = Lookup(status=Answer.NXDOMAIN, negative_ttl=60)
    aaaa = Lookup(status=Answer.SERVFAIL, rcode="SERVFAIL")
    report = _combine("10.0.0.2", Source.SETTINGS, [a, aaaa], 4)
    assert report.status is Answer.NXDOMAIN and report.negative_ttl == 60


def test_a_failure_names_every_lookups_error() -> None:
    a = Lookup(status=Answer.TIMEOUT, error="no answer in time")
    aaaa = Lookup(status=Answer.REFUSED, rcode="REFUSED")
    report = _combine("10.0.0.2", Source.SETTINGS, [a, aaaa], 4)
    assert report.status in FAILED and not report.answered
    assert report.error == "no answer in time; REFUSED"
