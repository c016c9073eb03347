"""Verdicts back onto alert messages: a ResultSink wrapper for diagnoses started by incidents.

The Slack sink posts an incident's diagnosis into the alert's thread; this wrapper also
tells ``Incidents`` the verdict, so the alert's root message reads "diagnosed: cause".
A grouped alert's (storm's) sites are the exception: two hundred full diagnoses in one
thread are 1,200 posts no one reads, at Slack's one post a second. Their diagnoses name no
thread (bot.alerts.posting.diagnosis_origin), so the Slack sink posts them only to the `/502`
threads sharing the run; each verdict goes onto the storm's table and the whole diagnosis is
kept for `show SITE` (bot.alerts.chat).

A site's run is shared (bot.flights): an incident may show a `/502`'s run it joined, whose
origin names no incident; the incident is then found by the site, as the one showing that
run.
Wrap the sink the carrier (in-process or the queue's workers) delivers to:
``IncidentVerdicts(SlackSink(...), incidents)``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.pipeline import DiagnosisRequest, ResultSink
from badgateway.checks.model import Diagnosis, StepResult

log = logging.getLogger(__name__)


TAKEN_KEPT = 4096  # storm runs remembered as taken (see IncidentVerdicts._first_result)


class IncidentVerdicts:
    def __init__(self, inner: ResultSink, incidents: Incidents) -> None:
        self.inner = inner
        self.incidents = incidents
        self._taken: OrderedDict[str, None] = OrderedDict()

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        incident_id = request.origin.get("incident")
        if incident_id and self._first_result(request):
            # A worker has it now: a "waiting for a worker" line goes.
            try:
                await self.incidents.worker_took(str(incident_id), request.id)
            except BaseException:
                self._taken.pop(request.id, None)  # the next result tries again
                raise
        await self.inner.step_finished(request, result)

    def _first_result(self, request: DiagnosisRequest) -> bool:
        """False for a storm's site already taken here: its steps run side by side in one job
        (bot.queue.job_kinds) and its verdict ends that job, which hides the line anyway, so
        its other steps need not read the incident again (1,000 reads a 200-site storm)."""
        if not request.origin.get("storm"):
            return True
        if request.id in self._taken:
            return False
        self._taken[request.id] = None
        while len(self._taken) > TAKEN_KEPT:
            self._taken.popitem(last=False)
        return True

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        try:
            await self.inner.diagnosis_finished(request, diagnosis)
        finally:
            incident_id = request.origin.get("incident")
            flight = request.origin.get("flight")
            if not incident_id and flight:  # a `/502`'s run, which an alert joined
                sharing = await self.incidents.sharing(str(flight), request.id)
                incident_id = sharing.id if sharing is not None else None
            if incident_id:
                verdict = diagnosis.verdict
                await self.incidents.diagnosed(
                    str(incident_id),
                    verdict.cause.value,
                    verdict.summary,
                    diagnosis_id=request.id,
                    requested_at=request.created_at,
                    doc=diagnosis.to_dict(),
                )
