"""The in-process carrier: results reach the sink, and a failing sink is retried, not lost."""

import ipaddress

from badgateway.bot.pipeline import DiagnosisRequest, InProcessCarrier
from badgateway.checks.model import Diagnosis, StepResult
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings

LOOPBACK = Settings(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), timeout_s=1)


class FlakySink:
    """Fails the first ``failures`` calls of each kind, like a chat service having a bad minute."""

    def __init__(self, failures: int) -> None:
        self.failures = {"step": failures, "verdict": failures}
        self.steps: list[str] = []
        self.verdicts: list[Diagnosis] = []
        self.calls = 0

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        self.calls += 1
        if self.failures["step"] > 0:
            self.failures["step"] -= 1
            raise ConnectionError("chat service unavailable")
        self.steps.append(result.name)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        self.calls += 1
        if self.failures["verdict"] > 0:
            self.failures["verdict"] -= 1
            raise ConnectionError("chat service unavailable")
        self.verdicts.append(diagnosis)


async def _run(sink: FlakySink) -> None:
    ctx = await prepare("http://127.0.0.1:9/", LOOPBACK)
    carrier = InProcessCarrier(LOOPBACK, sink, retry_delay_s=0.01)
    await carrier.submit(DiagnosisRequest.new(ctx, steps=["dns", "logs"]))
    await carrier.drain()


async def test_a_sink_that_fails_twice_still_gets_everything_once() -> None:
    sink = FlakySink(failures=2)
    await _run(sink)
    assert sorted(sink.steps) == ["dns", "logs"]
    assert len(sink.verdicts) == 1
    assert sink.calls == 3 + 1 + 3  # first step: 2 failures, then ok; second: ok; verdict: 3


async def test_a_sink_that_never_recovers_does_not_stall_the_carrier() -> None:
    sink = FlakySink(failures=100)
    await _run(sink)
    assert sink.steps == [] and sink.verdicts == []
    assert sink.calls == 4 * 3  # every call tried sink_tries (4) times, then given up


async def test_partial_rerun_keeps_the_other_results() -> None:
    sink = FlakySink(failures=0)
    ctx = await prepare("http://127.0.0.1:9/", LOOPBACK)
    kept = StepResult.from_findings("firewall", "kept from the first run", [])
    carrier = InProcessCarrier(LOOPBACK, sink)
    await carrier.submit(DiagnosisRequest.new(ctx, steps=["dns"], previous=[kept]))
    await carrier.drain()
    assert sink.steps == ["dns"]
    assert [s.name for s in sink.verdicts[0].steps] == ["dns", "firewall"]
