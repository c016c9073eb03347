"""ProbeContext: what every step receives — the target, the settings, and the pinned addresses.

The target's name is resolved and vetted once (``checks.runner.prepare``); steps connect to
those addresses only, so a DNS answer that changes between two probes (rebinding) cannot
steer a probe somewhere the guard never saw. A context round-trips through JSON so that a
step can run in a worker process.

Every request the diagnosis sends to the site carries its ``mark`` (``_bgw=<mark>.<n>``), so
that the logs step can find the diagnosis's own requests in the proxy's logs. A step that
needs another step's result (the logs step waits for the reload step's requests to reach the
proxy) asks ``result_of``; how the answer travels (a future in one process, the job store
across workers) is the carrier's business, given as ``peers``.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from badgateway.checks.model import StepResult
from badgateway.checks.resolve import ResolveKind
from badgateway.checks.settings import Settings
from badgateway.checks.target import Target, parse_target


def new_mark() -> str:
    """A diagnosis's mark: short, unguessable enough to tell two diagnoses apart in a log."""
    return secrets.token_hex(5)


class PeerResults(Protocol):
    """The results of the other steps of the same run, as they finish."""

    def runs(self, step: str) -> bool:
        """Whether ``step`` is part of this run (a partial rerun may leave it out)."""
        ...

    async def result(self, step: str) -> StepResult:
        """Wait for ``step``'s result (the caller bounds the wait)."""
        ...


@dataclass
class ProbeContext:
    target: Target
    settings: Settings
    addresses: tuple[str, ...] = ()  # vetted, in the order to try
    resolve_error: str | None = None  # why ``addresses`` is empty
    resolve_kind: ResolveKind | None = None  # why ``addresses`` is empty, in a word
    deadline: float = field(default=0.0)  # time.monotonic() by which a step must be done
    mark: str = field(default_factory=new_mark)  # in every request this diagnosis sends
    # The places (vantage workers) the probe steps run from; (): one place, where they run.
    places: tuple[str, ...] = ()
    # A person asked because it fails for them (a `/502`), not monitoring or an alert: when
    # every place reaches the site, the failure is on the asker's side (Cause.CLIENT_SIDE).
    asker_reports_failure: bool = False
    peers: PeerResults | None = field(default=None, repr=False, compare=False)

    def remaining(self) -> float:
        if not self.deadline:
            return self.settings.diagnosis_budget_s
        return max(0.0, self.deadline - time.monotonic())

    def probe_timeout(self) -> float:
        """The timeout for one network probe: the per-probe setting, never past the deadline."""
        return max(0.05, min(self.settings.timeout_s, self.remaining() - 0.2))

    def request_mark(self, label: str) -> str:
        """The ``_bgw`` value for one request of this diagnosis ("3f9a1c2b7e.r1")."""
        return f"{self.mark}.{label}"

    async def result_of(self, step: str) -> StepResult | None:
        """``step``'s result in this run, once it has finished; None when the step is not
        part of this run, no carrier can tell, or it does not finish within the budget."""
        if self.peers is None or not self.peers.runs(step):
            return None
        try:
            async with asyncio.timeout(max(0.0, self.remaining() - 0.3)):
                return await self.peers.result(step)
        except TimeoutError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.raw,
            "addresses": list(self.addresses),
            "resolve_error": self.resolve_error,
            "resolve_kind": self.resolve_kind.value if self.resolve_kind else None,
            "mark": self.mark,
            "places": list(self.places),
            "asker_reports_failure": self.asker_reports_failure,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], settings: Settings) -> ProbeContext:
        """Rebuild in another process; the addresses were vetted where they were resolved."""
        return cls(
            target=parse_target(d["target"], settings),
            settings=settings,
            addresses=tuple(d.get("addresses") or ()),
            resolve_error=d.get("resolve_error"),
            resolve_kind=ResolveKind(d["resolve_kind"]) if d.get("resolve_kind") else None,
            mark=str(d.get("mark") or new_mark()),
            places=tuple(str(p) for p in d.get("places") or ()),
            asker_reports_failure=bool(d.get("asker_reports_failure")),
        )
