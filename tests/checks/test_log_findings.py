"""What log scans are evidence for (checks.log_findings), on scans built by hand."""

from badgateway.checks.log_findings import findings_for, summary_of, window_text
from badgateway.checks.logscan import LogScan
from badgateway.checks.model import Status


def test_window_text() -> None:
    assert window_text(60) == "60 s"
    assert window_text(900) == "15 min"


def test_an_empty_log_is_quiet_and_explains_nothing() -> None:
    scan = LogScan(path="/var/log/nginx/error.log", format="nginx", detected=True, empty=True)
    [quiet] = findings_for([scan], 900)
    assert quiet.code == "log_quiet" and quiet.severity is Status.OK
    summary = summary_of([quiet], [scan], 900)
    assert summary == "1 log(s) read; no gateway error they can explain in the last 15 min"
