"""Verdicts back onto alert messages: a ResultSink wrapper for diagnoses started by incidents.

The Slack sink posts an incident's diagnosis into the alert's thread; this wrapper also
tells ``Incidents`` the verdict, so the alert's root message reads "diagnosed: cause".
A grouped alert's (storm's) sites are the exception: two hundred full diagnoses in one
thread are 1,200 posts no one reads, at Slack's one post a second. Their diagnoses are not
posted; each verdict goes onto the storm's table and the whole diagnosis is kept for
`show SITE` (bot.alerts.chat). A diagnosis someone asked for (`/502 SITE`) is posted.
Wrap the sink the carrier (in-process or the queue's workers) delivers to:
``IncidentVerdicts(SlackSink(...), incidents)``.
"""

from __future__ import annotations

import logging

from bot.alerts.incidents import Incidents
from bot.pipeline import DiagnosisRequest, ResultSink
from checks.model import Diagnosis, StepResult

log = logging.getLogger(__name__)


class IncidentVerdicts:
    def __init__(self, inner: ResultSink, incidents: Incidents) -> None:
        self.inner = inner
        self.incidents = incidents

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        incident_id = request.origin.get("incident")
        if incident_id:  # a worker has it now: a "waiting for a worker" line goes
            await self.incidents.worker_took(str(incident_id), request.id)
        if not quiet(request):
            await self.inner.step_finished(request, result)

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        try:
            if not quiet(request):
                await self.inner.diagnosis_finished(request, diagnosis)
        finally:
            incident_id = request.origin.get("incident")
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


def quiet(request: DiagnosisRequest) -> bool:
    """A storm site's own diagnosis, which no person asked for: kept, not posted."""
    return bool(request.origin.get("storm")) and not request.origin.get("user")
