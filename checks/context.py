"""ProbeContext: what every step receives — the target, the settings, and the pinned addresses.

The target's name is resolved and vetted once (``checks.runner.prepare``); steps connect to
those addresses only, so a DNS answer that changes between two probes (rebinding) cannot
steer a probe somewhere the guard never saw. A context round-trips through JSON so that a
step can run in a worker process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from checks.settings import Settings
from checks.target import Target, parse_target


@dataclass
class ProbeContext:
    target: Target
    settings: Settings
    addresses: tuple[str, ...] = ()  # vetted, in the order to try
    resolve_error: str | None = None  # why ``addresses`` is empty
    resolve_kind: str | None = None  # nxdomain | servfail | timeout | noanswer
    deadline: float = field(default=0.0)  # time.monotonic() by which a step must be done

    def remaining(self) -> float:
        if not self.deadline:
            return self.settings.diagnosis_budget_s
        return max(0.0, self.deadline - time.monotonic())

    def probe_timeout(self) -> float:
        """The timeout for one network probe: the per-probe setting, never past the deadline."""
        return max(0.05, min(self.settings.timeout_s, self.remaining() - 0.2))

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target.raw,
            "addresses": list(self.addresses),
            "resolve_error": self.resolve_error,
            "resolve_kind": self.resolve_kind,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], settings: Settings) -> ProbeContext:
        """Rebuild in another process; the addresses were vetted where they were resolved."""
        return cls(
            target=parse_target(d["target"], settings),
            settings=settings,
            addresses=tuple(d.get("addresses") or ()),
            resolve_error=d.get("resolve_error"),
            resolve_kind=d.get("resolve_kind"),
        )
