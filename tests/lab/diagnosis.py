"""Whole diagnoses of lab sites, as the end-to-end cause tests run them: one site whose URL is
the lab proxy's, whose logs and upstreams are the lab's, with loopback allowed and short
probes; and what to print when a verdict is not the expected one."""

from __future__ import annotations

import json
from ipaddress import ip_network
from pathlib import Path

import httpx

from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Diagnosis, StepResult
from badgateway.checks.runner import diagnose
from badgateway.checks.settings import LogSource, Settings, Site
from badgateway.checks.steps.logs import run
from badgateway.checks.target import parse_target


def get(url: str) -> int | None:
    """One user's request: its status, or None when no answer came."""
    try:
        return httpx.get(url, timeout=6).status_code
    except httpx.HTTPError:
        return None


def lab_settings(url: str, logs: list[Path], upstreams: tuple[str, ...] = ()) -> Settings:
    site = Site(
        name="lab",
        url=url,
        upstreams=upstreams,
        logs=tuple(LogSource(str(path)) for path in logs),
    )
    return Settings(
        allow_networks=(ip_network("127.0.0.0/8"),),
        sites=(site,),
        reload_attempts=2,
        reload_spacing_s=0.1,
        timeout_s=3,
        log_window_s=300,
    )


async def diagnose_lab(url: str, logs: list[Path], upstreams: tuple[str, ...] = ()) -> Diagnosis:
    return await diagnose(url, lab_settings(url, logs, upstreams))


def own_log_evidence(diagnosis: Diagnosis) -> int:
    """How many of the diagnosis's own requests the verdict's log evidence names."""
    return sum(
        int(f.data.get("own", 0)) for f in diagnosis.verdict.evidence if f.code.startswith("log_")
    )


def explain(diagnosis: Diagnosis) -> str:
    lines = [f"verdict {diagnosis.verdict.cause}: {diagnosis.verdict.summary}"]
    for step in diagnosis.steps:
        lines.append(f"  {step.name} {step.status}: {step.summary}")
        lines += [f"    {f.code} {f.severity} {f.cause} w{int(f.weight)}" for f in step.findings]
    return "\n".join(lines)


async def run_diagnosis(url: str, logs: list[Path], upstreams: tuple[str, ...] = ()) -> Diagnosis:
    diagnosis = await diagnose_lab(url, logs, upstreams)
    logs_step = next(s for s in diagnosis.steps if s.name == "logs")
    assert logs_step.status.value in ("fail", "warn"), logs_step.summary
    return diagnosis


async def run_logs(
    *logs: LogSource, window_s: float = 300, site: bool = True, url: str = "http://127.0.0.1:1/"
) -> StepResult:
    """The logs step alone, for a site at ``url`` (its lines are told from other sites' by
    the Host they name, or nginx's server_name "lab", the site's name here)."""
    sites = (Site(name="lab", url=url, logs=logs),) if site else ()
    settings = Settings(
        allow_networks=(ip_network("127.0.0.0/8"),), sites=sites, log_window_s=window_s
    )
    ctx = ProbeContext(target=parse_target(url, settings), settings=settings)
    result = await run(ctx)
    json.dumps(result.to_dict())  # everything a step returns is JSON
    return result
