"""badgateway's diagnosis engine: why does a gateway answer 502 (or 503/504)?

Input (a target typed by a user, the sites file) -> steps (reload, dns, firewall, logs,
host) -> findings -> verdict. Nothing here knows about Slack, queues or terminals.
"""

from badgateway.checks.guard import TargetRefused
from badgateway.checks.model import Cause, Diagnosis, Finding, Status, StepResult, Verdict, Weight
from badgateway.checks.runner import diagnose, prepare, run_step, run_steps
from badgateway.checks.settings import Settings, SettingsError, Site, load_settings
from badgateway.checks.target import BadTarget, Target, parse_target

__all__ = [
    "BadTarget",
    "Cause",
    "Diagnosis",
    "Finding",
    "Settings",
    "SettingsError",
    "Site",
    "Status",
    "StepResult",
    "Target",
    "TargetRefused",
    "Verdict",
    "Weight",
    "diagnose",
    "load_settings",
    "parse_target",
    "prepare",
    "run_step",
    "run_steps",
]
