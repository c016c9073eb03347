"""IncidentVerdicts: which step results look up the incident's "waiting for a worker" line."""

from __future__ import annotations

from typing import cast

import pytest

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.alerts.sink import IncidentVerdicts
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.checks.model import Diagnosis, Status, StepResult


class Taken:
    """Stands in for Incidents: records each worker_took, fails when told to."""

    def __init__(self) -> None:
        self.took: list[tuple[str, str]] = []
        self.fail_next = False

    async def worker_took(self, incident_id: str, diagnosis_id: str) -> None:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("redis blip")
        self.took.append((incident_id, diagnosis_id))


class Shown:
    """The inner sink: what reached it."""

    def __init__(self) -> None:
        self.steps: list[str] = []

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        self.steps.append(result.name)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        raise AssertionError("not used here")


def request(run: str, origin: dict[str, str]) -> DiagnosisRequest:
    return DiagnosisRequest(id=run, context={}, steps=["dns", "tcp", "http"], origin=origin)


async def test_a_storm_run_reads_its_incident_once_and_others_on_every_step() -> None:
    taken, shown = Taken(), Shown()
    sink = IncidentVerdicts(shown, cast(Incidents, taken))
    storm = request("d1", {"incident": "i1", "storm": "s1"})
    alone = request("d2", {"incident": "i2"})
    for name in ("dns", "tcp", "http"):
        await sink.step_finished(storm, StepResult(name, Status.OK, "fine"))
        await sink.step_finished(alone, StepResult(name, Status.OK, "fine"))
    assert taken.took == [("i1", "d1"), ("i2", "d2"), ("i2", "d2"), ("i2", "d2")]
    assert len(shown.steps) == 6  # every result still reaches the thread's sink


async def test_a_failed_read_is_tried_again_by_the_next_result() -> None:
    taken, shown = Taken(), Shown()
    sink = IncidentVerdicts(shown, cast(Incidents, taken))
    storm = request("d1", {"incident": "i1", "storm": "s1"})
    taken.fail_next = True
    with pytest.raises(ConnectionError):  # the carrier's to retry
        await sink.step_finished(storm, StepResult("dns", Status.OK, "fine"))
    await sink.step_finished(storm, StepResult("tcp", Status.OK, "fine"))
    await sink.step_finished(storm, StepResult("http", Status.OK, "fine"))
    assert taken.took == [("i1", "d1")]
