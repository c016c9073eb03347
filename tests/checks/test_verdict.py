"""The verdict's decision rules, on findings as steps report them.

These test the ordering logic only (which layer wins, which evidence is stronger); the
end-to-end tests (test_causes_*.py) prove each cause against real servers.
"""

from badgateway.checks.causes import CATALOGUE, render_markdown
from badgateway.checks.model import Cause, Finding, Status, StepResult, Weight
from badgateway.checks.verdict import decide
from tests.lab import REPO


def step(name: str, *findings: Finding) -> StepResult:
    return StepResult.from_findings(name, f"{name} summary", list(findings))


def evidence(
    cause: Cause, weight: Weight = Weight.OBSERVED, count: int = 1, code: str = "x"
) -> Finding:
    return Finding(code, f"{cause.value} seen", Status.FAIL, cause, weight, {"count": count})


OK = Finding("http_ok", "all attempts answered 200", Status.OK, Cause.HEALTHY, Weight.OBSERVED)


def test_no_evidence_is_unknown() -> None:
    verdict = decide([step("reload", Finding("http_error", "502 from nginx", Status.FAIL))])
    assert verdict.cause is Cause.UNKNOWN
    assert "502 from nginx" in verdict.summary


def test_healthy_when_every_attempt_succeeds() -> None:
    verdict = decide([step("reload", OK), step("dns", Finding("dns_ok", "agree", Status.OK))])
    assert verdict.cause is Cause.HEALTHY


def test_outer_layer_hides_inner_ones() -> None:
    results = [
        step("dns", evidence(Cause.DNS_NXDOMAIN)),
        step("logs", evidence(Cause.UPSTREAM_REFUSED, count=40)),
    ]
    assert decide(results).cause is Cause.DNS_NXDOMAIN


def test_weak_dns_failure_is_not_a_verdict() -> None:
    weak = evidence(Cause.DNS_FAILURE, Weight.HINT)
    assert decide([step("dns", weak)]).cause is Cause.UNKNOWN


def test_stronger_evidence_wins_inside_a_layer() -> None:
    results = [
        step("reload", evidence(Cause.UPSTREAM_INVALID, Weight.INFERRED)),
        step("logs", evidence(Cause.UPSTREAM_CLOSED, Weight.OBSERVED)),
    ]
    assert decide(results).cause is Cause.UPSTREAM_CLOSED


def test_more_occurrences_win_between_equal_weights() -> None:
    results = [
        step("logs", evidence(Cause.UPSTREAM_TIMEOUT, count=2)),
        step("logs", evidence(Cause.UPSTREAM_REFUSED, count=9)),
    ]
    assert decide(results).cause is Cause.UPSTREAM_REFUSED


def test_healthy_site_with_a_dns_problem_reports_the_dns_problem() -> None:
    results = [step("reload", OK), step("dns", evidence(Cause.DNS_MISMATCH))]
    assert decide(results).cause is Cause.DNS_MISMATCH


def test_healthy_site_ignores_logged_upstream_errors() -> None:
    results = [step("reload", OK), step("logs", evidence(Cause.UPSTREAM_REFUSED))]
    assert decide(results).cause is Cause.HEALTHY


def test_transient_names_what_the_logs_blame() -> None:
    flaky = Finding("transient", "502 then 200", Status.WARN, Cause.TRANSIENT, Weight.OBSERVED)
    closed = Finding(
        "log", "upstream prematurely closed", Status.FAIL, Cause.UPSTREAM_CLOSED, Weight.OBSERVED
    )
    verdict = decide([step("reload", flaky), step("logs", closed)])
    assert verdict.cause is Cause.TRANSIENT
    assert "upstream prematurely closed" in verdict.summary


def test_specific_next_step_comes_first() -> None:
    f = Finding(
        "up",
        "127.0.0.1:9000 refused",
        Status.FAIL,
        Cause.UPSTREAM_REFUSED,
        Weight.OBSERVED,
        {"next_step": "Start the app on 127.0.0.1:9000."},
    )
    verdict = decide([step("firewall", f)])
    assert verdict.next_steps[0] == "Start the app on 127.0.0.1:9000."
    assert verdict.evidence == [f]


def test_ok_severity_findings_are_not_problem_evidence() -> None:
    info = Finding("tls_ok", "cert fine", Status.OK, Cause.TLS_ERROR, Weight.OBSERVED)
    assert decide([step("firewall", info)]).cause is Cause.UNKNOWN


def test_errored_steps_are_named_in_the_summary() -> None:
    broken = StepResult("logs", Status.ERROR, "crashed", [])
    verdict = decide([step("reload", OK), broken])
    assert "logs" in verdict.summary


def test_every_cause_is_documented_and_the_docs_are_current() -> None:
    assert set(CATALOGUE) == set(Cause)
    with open(REPO / "docs" / "causes.md", encoding="utf-8") as fh:
        assert fh.read() == render_markdown(), (
            "regenerate: python -m badgateway.checks.causes > docs/causes.md"
        )


TRANSIENT = Finding("transient", "1 of 4 failed", Status.WARN, Cause.TRANSIENT, Weight.OBSERVED)


def test_failing_from_some_places_beats_working_from_others() -> None:
    """The places that work report healthy; the verdict is still regional."""
    results = [
        step("reload", evidence(Cause.REGIONAL), OK),
        step("logs", evidence(Cause.UPSTREAM_REFUSED, count=40)),
    ]
    assert decide(results).cause is Cause.REGIONAL
    assert decide([step("reload", evidence(Cause.REGIONAL), TRANSIENT)]).cause is Cause.REGIONAL
    # A name that resolves nowhere still comes first.
    results.append(step("dns", evidence(Cause.DNS_NXDOMAIN)))
    assert decide(results).cause is Cause.DNS_NXDOMAIN


def test_working_everywhere_but_for_the_asker_is_client_side() -> None:
    asker = Finding("client_side", "fails for the asker", Status.WARN, Cause.CLIENT_SIDE)
    results = [step("reload", asker, OK), step("logs", evidence(Cause.UPSTREAM_REFUSED))]
    verdict = decide(results)
    assert verdict.cause is Cause.CLIENT_SIDE and "fails for the asker" in verdict.summary
    # Resolvers that disagree explain the asker's failure better: the site's DNS is at fault.
    dns = step("dns", evidence(Cause.DNS_INCONSISTENT))
    assert decide([*results, dns]).cause is Cause.DNS_INCONSISTENT
    # Attempts that come and go: transient, not the asker's side.
    assert decide([step("reload", asker, OK, TRANSIENT)]).cause is Cause.TRANSIENT


def test_failing_from_some_places_needs_a_place_it_works_from() -> None:
    """us-east's resolver fails (so its reload is skipped) while eu-west resolves but gets
    502s: the DNS step sees a place-only failure, but the site works from nowhere, so the
    places' own findings decide."""
    dns_regional = Finding("regional", "DNS fails from us-east", Status.FAIL, Cause.REGIONAL)
    nxdomain = Finding(
        "dns_nxdomain",
        "no such name (from us-east)",
        Status.FAIL,
        None,
        Weight.OBSERVED,
        {"cause_at_place": Cause.DNS_NXDOMAIN.value},
    )
    results = [
        step("dns", dns_regional, nxdomain),
        step("reload", evidence(Cause.UPSTREAM_REFUSED, Weight.INFERRED)),
    ]
    verdict = decide(results)
    assert verdict.cause is Cause.DNS_NXDOMAIN
    assert verdict.evidence[0].message == "no such name (from us-east)"
    # With a place where it works, it is regional.
    assert decide([step("dns", dns_regional, nxdomain), step("reload", OK)]).cause is Cause.REGIONAL
