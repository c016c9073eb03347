"""badgateway's diagnosis engine: why does a gateway answer 502 (or 503/504)?

Input (a target typed by a user, the sites file) -> steps (reload, dns, firewall, logs,
host) -> findings -> verdict. Nothing here knows about Slack, queues or terminals.
"""

from checks.guard import TargetRefused
from checks.model import Cause, Diagnosis, Finding, Status, StepResult, Verdict, Weight
from checks.runner import diagnose, prepare, run_step, run_steps
from checks.settings import Settings, SettingsError, Site, load_settings
from checks.target import BadTarget, Target, parse_target

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
