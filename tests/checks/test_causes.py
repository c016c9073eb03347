"""The cause table (checks.causes): every cause has an entry and, unless it is a conclusion
rather than a place of failure, a layer, so that no cause can be left out of the verdict."""

from badgateway.checks.causes import BEHIND_THE_PROXY, CATALOGUE, LAYERS, Layer, causes_in
from badgateway.checks.model import Cause

CONCLUSIONS = {Cause.HEALTHY, Cause.TRANSIENT, Cause.CLIENT_SIDE, Cause.UNKNOWN}


def test_every_cause_has_an_entry() -> None:
    assert set(CATALOGUE) == set(Cause)


def test_every_cause_but_the_conclusions_has_a_layer() -> None:
    without = {cause for cause, info in CATALOGUE.items() if info.layer is None}
    assert without == CONCLUSIONS


def test_the_layers_hold_every_other_cause_once() -> None:
    listed = [cause for layer in LAYERS for cause in layer]
    assert sorted(listed) == sorted(set(Cause) - CONCLUSIONS)
    assert len(LAYERS) == len(Layer) and all(LAYERS)


def test_layers_run_outside_in() -> None:
    assert LAYERS == (
        (Cause.DNS_NXDOMAIN, Cause.DNS_FAILURE),
        (Cause.REGIONAL,),
        (Cause.DNS_MISMATCH, Cause.DNS_INCONSISTENT),
        (Cause.UNREACHABLE, Cause.FIREWALL_DROP, Cause.TLS_ERROR),
        (Cause.BLOCKED,),
        causes_in(Layer.APP_SERVER)[0],
        (Cause.SERVER_ERROR,),
    )


def test_behind_the_proxy_is_the_app_servers_and_the_application() -> None:
    assert set(BEHIND_THE_PROXY) == {
        Cause.UPSTREAM_REFUSED,
        Cause.UPSTREAM_PERMISSION,
        Cause.UPSTREAM_TIMEOUT,
        Cause.UPSTREAM_CLOSED,
        Cause.UPSTREAM_INVALID,
        Cause.UPSTREAM_HEADER_TOO_BIG,
        Cause.UPSTREAM_TLS,
        Cause.UPSTREAM_DNS,
        Cause.OVERLOAD,
        Cause.APP_TIMEOUT,
        Cause.SERVER_ERROR,
    }
