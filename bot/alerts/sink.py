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

from badgateway.bot.alerts.incidents import Incidents
from badgateway.bot.pipeline import DiagnosisRequest, ResultSink
from badgateway.checks.model import Diagnosis, StepResult

log = logging.getLogger(__name__)


class IncidentVerdicts:
    def __init__(self, inner: ResultSink, incidents: Incidents) -> None:
        self.inner = inner
        self.incidents = incidents

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        incident_id = request.origin.get("incident")
        if incident_id:  # a worker has it now: a "waiting for a worker" line goes
            await self.incidents.worker_took(str(incident_id), request.id)
        await self.inner.step_finished(request, result)

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
