"""What a TLS report is evidence for (checks.tls_inspect gathers the facts): each problem is a
``tls_error`` finding, a certificate near its end a warning, else one line saying it is valid.

A handshake that timed out is inferred, not observed: the bot's timeout is not the browser's.
"""

from __future__ import annotations

from badgateway.checks.certificate import common_name, day_of
from badgateway.checks.model import Cause, Finding, Status, Weight
from badgateway.checks.tls_inspect import EXPIRY_WARNING_DAYS, TlsProblemKind, TlsReport


def tls_findings(report: TlsReport, *, show_address: bool = False) -> list[Finding]:
    """One finding per problem (cause tls_error), a warning for a near expiry, else ok."""
    where = f" ({report.address})" if show_address else ""
    found: list[Finding] = []
    for problem in report.problems:
        found.append(
            Finding(
                f"tls_{problem.kind}",
                problem.message + where,
                Status.FAIL,
                Cause.TLS_ERROR,
                Weight.INFERRED
                if problem.kind is TlsProblemKind.HANDSHAKE_TIMEOUT
                else Weight.OBSERVED,
                {"address": report.address},
            )
        )
    if found:
        return found
    cert = report.certificate
    if cert is not None and report.days_left is not None:
        if report.days_left < EXPIRY_WARNING_DAYS:
            found.append(
                Finding(
                    "tls_expiring",
                    f"the certificate for {report.server_name} expires on "
                    f"{day_of(cert.not_after)}, in {report.days_left} day(s){where}",
                    Status.WARN,
                    data={"address": report.address, "days_left": report.days_left},
                )
            )
            return found
    found.append(
        Finding(
            "tls_ok",
            f"TLS is valid for {report.server_name}: {report.protocol or 'TLS'}, certificate "
            f"issued by {common_name(cert.issuer) if cert else '?'}, "
            f"{report.days_left if report.days_left is not None else '?'} days left{where}",
            Status.OK,
            data={"address": report.address},
        )
    )
    return found
