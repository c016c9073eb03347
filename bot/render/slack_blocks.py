"""Block Kit messages for a diagnosis thread: the root message, one reply per step, the verdict.

Rendering only shows what the engine decided (StepResult, Verdict); it never picks a cause.
Every text that came from a site, a log or a user is redacted and escaped for mrkdwn before
it goes into a message, and every message is cut to Slack's Block Kit limits: long evidence
ends with "…and N more" instead of being rejected by the API.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from badgateway.bot.render.evidence import step_evidence
from badgateway.bot.render.mentions import escape_mrkdwn, user_mention
from badgateway.bot.render.wording import alert_link, cut, escape, on_it, slack_date_time
from badgateway.checks import steps as step_registry
from badgateway.checks.causes import CATALOGUE
from badgateway.checks.model import Cause, Diagnosis, Status, StepResult, Verdict
from badgateway.checks.redact import redact

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks)
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_CONTEXT_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_ACTION_ELEMENTS = 25
MAX_MESSAGE_TEXT = 40000
CHANGES_SHOWN = 8  # changes since the last healthy check listed under a verdict
MAX_PLACEHOLDER_TEXT = 150  # a select menu's placeholder
MAX_OPTIONS = 100  # options in one select menu, or in one answer to an external select
MAX_OPTION_TEXT = 75  # an option's plain text
MAX_OPTION_VALUE = 150  # an option's value
MAX_ROWS = 12  # evidence rows shown per table before "…and N more"

Message = dict[str, Any]  # {"text": fallback, "blocks": [...]}

MARKS = {
    Status.OK: "✅",
    Status.WARN: "⚠️",
    Status.FAIL: "❌",
    Status.ERROR: "⛔",
    Status.SKIPPED: "➖",
}
PENDING = "⏳"

# Action ids of the verdict's buttons; the shell presses them by the short name.
ACTIONS = {
    "rerun": ("bgw_rerun", "Re-run"),
    "take": ("bgw_take", "I'm on it"),
    "escalate": ("bgw_escalate", "Escalate to host"),
    "resolve": ("bgw_resolve", "Resolved"),
}
# The menu on a grouped alert's root that shows one site's full diagnosis in its thread.
SHOW_SITE_ACTION = "bgw_show_site"
# The five steps the runbook has; only a display fallback when the registry lacks a step.
_FALLBACK_TITLES = {
    "reload": "Reload",
    "dns": "DNS",
    "firewall": "Network path",
    "logs": "Logs",
    "host": "Host",
}


def step_title(name: str) -> str:
    step = step_registry.step_named(name)
    return step.title if step else _FALLBACK_TITLES.get(name, name)


def ordered_names(names: Iterable[str]) -> list[str]:
    """Step names in runbook order; names the registry does not know go last."""
    order = {s.name: s.order for s in step_registry.all_steps()}
    return sorted(dict.fromkeys(names), key=lambda n: (order.get(n, 1000), n))


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut(text, MAX_SECTION_TEXT)}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def header(text: str) -> dict[str, Any]:
    plain = cut(text, MAX_HEADER_TEXT)
    return {"type": "header", "text": {"type": "plain_text", "text": plain, "emoji": True}}


def context(*texts: str) -> dict[str, Any]:
    elements = [_mrkdwn(cut(t, MAX_CONTEXT_TEXT)) for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements}


def sections(lines: Sequence[str], limit: int = MAX_SECTION_TEXT) -> list[dict[str, Any]]:
    """Pack lines into as few sections as fit the text limit."""
    blocks: list[dict[str, Any]] = []
    chunk = ""
    for line in lines:
        line = cut(line, limit)
        if chunk and len(chunk) + 1 + len(line) > limit:
            blocks.append(section(chunk))
            chunk = ""
        chunk = f"{chunk}\n{line}" if chunk else line
    if chunk:
        blocks.append(section(chunk))
    return blocks


def fit(message: Message) -> Message:
    """Cut a message to Slack's limits (block count, fallback text)."""
    blocks = list(message.get("blocks") or [])
    if len(blocks) > MAX_BLOCKS:
        # Keep the head and the last block (the verdict's buttons live at the end).
        dropped = len(blocks) - MAX_BLOCKS + 1
        tail = blocks[-1:]
        blocks = [*blocks[: MAX_BLOCKS - 2], context(f"…and {dropped} more blocks"), *tail]
    return {**message, "text": cut(message.get("text") or "", 3000), "blocks": blocks}


# Root message ------------------------------------------------------------------------------
def root_message(
    *,
    target: str,
    url: str,
    requester: str,
    steps: Sequence[str],
    results: dict[str, StepResult],
    verdict: Verdict | None = None,
    taken_by: str | None = None,
    resolved_by: str | None = None,
    resolved_at: float | None = None,
    rerun_count: int = 0,
    link: str = "",
) -> Message:
    """``link``: the permalink of the site's open alert's thread, shown near the top."""
    lines = []
    for name in ordered_names(steps):
        result = results.get(name)
        if result is None:
            lines.append(f"{PENDING} {step_title(name)} — _running…_")
        else:
            mark = MARKS[result.status]
            lines.append(f"{mark} *{step_title(name)}* — {escape(cut(result.summary, 300))}")
    blocks: list[dict[str, Any]] = [
        header(f"502 diagnosis: {cut(target, 120)}"),
        section(f"*Target:* {escape(url)}\n*Asked by:* {user_mention(requester)}"),
        *([section(alert_link(link))] if link else []),
        *sections(lines or ["_no checks are installed_"]),
    ]
    if verdict is not None:
        info = CATALOGUE[verdict.cause]
        blocks.append(section(f"*Verdict:* `{verdict.cause.value}` — {escape(info.title)}"))
    elif lines:
        blocks.append(context("Results arrive in the thread as each check finishes."))
    notes = []
    if rerun_count:
        notes.append(f"re-run {rerun_count}×")
    if taken_by:
        notes.append(on_it(taken_by))
    if resolved_by and resolved_at:
        notes.append(f"✔️ resolved by {user_mention(resolved_by)} {slack_date_time(resolved_at)}")
    if notes:
        blocks.append(context(" · ".join(notes)))
    status = f"verdict {verdict.cause.value}" if verdict else "running"
    if resolved_by:
        status += ", resolved"
    return fit({"text": f"502 diagnosis for {escape(target)}: {status}", "blocks": blocks})


# Step replies ------------------------------------------------------------------------------
def step_message(result: StepResult) -> Message:
    """One threaded reply for one step; its fallback text starts with the step's name."""
    mark = MARKS[result.status]
    blocks: list[dict[str, Any]] = [
        section(f"{mark} *{step_title(result.name)}* (`{result.name}`)\n{escape(result.summary)}"),
    ]
    findings = []
    for finding in result.findings[:MAX_ROWS]:
        count = finding.data.get("count")
        times = f" ×{count}" if isinstance(count, int) and count > 1 else ""
        findings.append(f"{MARKS[finding.severity]} {escape(finding.message)}{times}")
    if len(result.findings) > MAX_ROWS:
        findings.append(f"…and {len(result.findings) - MAX_ROWS} more")
    blocks += sections(findings)
    readable = step_evidence(result)
    if readable is None:
        evidence = evidence_lines(result.details)
    else:
        evidence = [
            f"```{escape(cut(line, 2800))}```" if "\n" in line else escape(cut(line, 600))
            for line in readable
        ]
    if evidence:
        blocks += sections(["*Evidence*", *evidence])
    blocks.append(context(f"{result.status.value} · {result.duration_ms} ms"))
    return fit({"text": f"{result.name}: {escape(result.summary)}", "blocks": blocks})


def _scalar(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str | int | bool):
        return str(value)
    return json.dumps(value, separators=(",", ":"), default=str)


def _label(key: str) -> str:
    return key.replace("_", " ")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


# Fields that fill a line without helping a person read it.
_NOISE = {"user_agent", "started_at", "body_truncated", "generated", "url"}


def _row(item: Any) -> str:
    if isinstance(item, dict):
        parts = []
        for k, v in item.items():
            if v in (None, "", [], {}) or v is False or (k in _NOISE and len(item) > 3):
                continue
            parts.append(f"{_label(k)}: {cut(_scalar(v), 200)}")
        return " · ".join(parts)
    return cut(_scalar(item), 500)


def evidence_lines(details: dict[str, Any], indent: str = "") -> list[str]:
    """The step's evidence tables as text lines, whatever their shape (JSON data)."""
    lines: list[str] = []
    for key, value in details.items():
        if value in (None, "", [], {}):
            continue
        label = _label(str(key))
        if isinstance(value, str) and "\n" in value:
            text = cut(value, 1500)
            lines.append(f"{indent}*{escape(label)}*\n```{escape(text)}```")
        elif _is_scalar(value):
            lines.append(f"{indent}{escape(label)}: {escape(cut(_scalar(value), 500))}")
        elif isinstance(value, list):
            if all(_is_scalar(v) for v in value):
                shown = ", ".join(_scalar(v) for v in value[:MAX_ROWS])
                more = f" …and {len(value) - MAX_ROWS} more" if len(value) > MAX_ROWS else ""
                lines.append(f"{indent}{escape(label)}: {escape(cut(shown, 1000))}{more}")
            else:
                lines.append(f"{indent}*{escape(label)}* ({len(value)})")
                for item in value[:MAX_ROWS]:
                    lines.append(f"{indent}• {escape(_row(item))}")
                if len(value) > MAX_ROWS:
                    lines.append(f"{indent}…and {len(value) - MAX_ROWS} more")
        elif isinstance(value, dict):
            if all(_is_scalar(v) for v in value.values()):
                lines.append(f"{indent}*{escape(label)}*: {escape(_row(value))}")
            else:
                lines.append(f"{indent}*{escape(label)}*")
                lines += evidence_lines(value, indent + "    ")
        if len(lines) > 4 * MAX_ROWS:
            break
    return lines


# Verdict -----------------------------------------------------------------------------------
def buttons(root_ts: str, *, resolved: bool = False) -> dict[str, Any]:
    elements = []
    for name, (action_id, label) in ACTIONS.items():
        if resolved and name in ("take", "resolve"):
            continue
        button: dict[str, Any] = {
            "type": "button",
            "action_id": action_id,
            "text": {"type": "plain_text", "text": cut(label, MAX_BUTTON_TEXT), "emoji": True},
            "value": root_ts,
        }
        if name == "resolve":
            button["style"] = "primary"
        elif name == "escalate":
            button["style"] = "danger"
        elements.append(button)
    return {"type": "actions", "block_id": "bgw_verdict_actions", "elements": elements}


def verdict_message(diagnosis: Diagnosis, root_ts: str, *, resolved: bool = False) -> Message:
    verdict = diagnosis.verdict
    info = CATALOGUE[verdict.cause]
    mark = "✅" if verdict.cause is Cause.HEALTHY else "🔎"
    blocks: list[dict[str, Any]] = [
        header(f"{mark} Verdict: {info.title}"),
        section(escape(verdict.summary)),
    ]
    if verdict.next_steps:
        steps = [f"{n}. {escape(text)}" for n, text in enumerate(verdict.next_steps[:8], 1)]
        blocks += sections(["*Next steps*", *steps])
    if verdict.changes:
        # Bold: at the failing layer, strong evidence; the rest is context.
        changed = [
            f"• *{escape(c.message)}*" if c.at_failing_layer else f"• {escape(c.message)}"
            for c in verdict.changes[:CHANGES_SHOWN]
        ]
        more = len(verdict.changes) - CHANGES_SHOWN
        changed += [f"…and {more} more"] if more > 0 else []
        blocks += sections(["*What changed*", *changed])
    if verdict.baseline:
        blocks.append(context(escape(verdict.baseline)))
    took = f"{diagnosis.duration_ms / 1000:.1f} s"
    blocks.append(
        context(f"cause `{verdict.cause.value}` · {len(diagnosis.steps)} checks · {took}")
    )
    blocks.append(buttons(root_ts, resolved=resolved))
    text = f"verdict: {verdict.cause.value} — {escape(info.title)}"
    return fit({"text": text, "blocks": blocks})


def escalation_text(diagnosis: Diagnosis, requester: str | None = None) -> str:
    """A plain summary a hosting provider can act on: what, when, and the evidence."""
    verdict = diagnosis.verdict
    lines = [
        f"Site: {diagnosis.url}",
        f"Checked: {diagnosis.started_at} (UTC), took {diagnosis.duration_ms} ms",
        f"Finding: {CATALOGUE[verdict.cause].title} ({verdict.cause.value})",
        verdict.summary,
    ]
    if verdict.evidence:
        lines.append("Evidence:")
        lines += [f"- {f.message}" for f in verdict.evidence[:8]]
    lines.append("Checks:")
    lines += [f"- {s.name}: {s.status.value} — {s.summary}" for s in diagnosis.steps]
    for step in diagnosis.steps:
        for key in ("provider_summary", "report", "summary"):
            value = step.details.get(key)
            if isinstance(value, str) and value.strip():
                lines += ["", f"From the {step.name} check:", value.strip()]
                break
    return redact("\n".join(lines))


def escalation_message(diagnosis: Diagnosis, user: str) -> Message:
    text = cut(escalation_text(diagnosis), MAX_SECTION_TEXT - 200)
    quoted = escape_mrkdwn(text)
    blocks = [
        section(
            f"📨 {user_mention(user)} is escalating to the hosting provider. Summary to send them:"
        ),
        section(f"```{quoted}```"),
    ]
    return fit({"text": "escalation summary for the hosting provider", "blocks": blocks})


def site_menu(placeholder: str) -> dict[str, Any]:
    """An actions block with the menu of a grouped alert's sites. Its options are served by
    the app as the user types (an external select: a storm has more sites than the 100 a
    static menu holds)."""
    menu = {
        "type": "external_select",
        "action_id": SHOW_SITE_ACTION,
        "placeholder": {"type": "plain_text", "text": cut(placeholder, MAX_PLACEHOLDER_TEXT)},
        "min_query_length": 0,
    }
    return {"type": "actions", "block_id": "bgw_show_site_menu", "elements": [menu]}


def option(text: str, value: str) -> dict[str, Any]:
    """One option of a menu; ``text`` is cut to Slack's limit (``value`` must fit already)."""
    return {"text": {"type": "plain_text", "text": cut(text, MAX_OPTION_TEXT)}, "value": value}


def notice(text: str) -> Message:
    """A short thread note (who took it, who resolved it); ``text`` is already safe mrkdwn."""
    return fit({"text": text, "blocks": [section(text)]})


# Limits check ------------------------------------------------------------------------------
def block_kit_problems(message: Message) -> list[str]:
    """Every way ``message`` breaks a Block Kit limit (empty when it is fine)."""
    problems: list[str] = []
    blocks = message.get("blocks") or []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks > {MAX_BLOCKS}")
    if len(message.get("text") or "") > MAX_MESSAGE_TEXT:
        problems.append("fallback text too long")
    for i, block in enumerate(blocks):
        kind = block.get("type")
        if kind == "section" and len(block["text"]["text"]) > MAX_SECTION_TEXT:
            problems.append(f"block {i}: section text {len(block['text']['text'])} chars")
        if kind == "header" and len(block["text"]["text"]) > MAX_HEADER_TEXT:
            problems.append(f"block {i}: header text too long")
        if kind == "context":
            if len(block["elements"]) > MAX_CONTEXT_ELEMENTS:
                problems.append(f"block {i}: too many context elements")
            problems += [
                f"block {i}: context text too long"
                for e in block["elements"]
                if len(e.get("text", "")) > MAX_CONTEXT_TEXT
            ]
        if kind == "actions":
            if len(block["elements"]) > MAX_ACTION_ELEMENTS:
                problems.append(f"block {i}: too many actions")
            problems += [
                f"block {i}: button text too long"
                for e in block["elements"]
                if e["type"] == "button" and len(e["text"]["text"]) > MAX_BUTTON_TEXT
            ]
            problems += [
                f"block {i}: menu placeholder too long"
                for e in block["elements"]
                if e["type"] != "button" and len(e["placeholder"]["text"]) > MAX_PLACEHOLDER_TEXT
            ]
    return problems


def options_problems(options: Sequence[dict[str, Any]]) -> list[str]:
    """Every way an answer to an external select breaks Slack's limits (empty when fine)."""
    problems = [f"{len(options)} options > {MAX_OPTIONS}"] if len(options) > MAX_OPTIONS else []
    for i, item in enumerate(options):
        if not 0 < len(item["text"]["text"]) <= MAX_OPTION_TEXT:
            problems.append(f"option {i}: text of {len(item['text']['text'])} chars")
        if not 0 < len(item["value"]) <= MAX_OPTION_VALUE:
            problems.append(f"option {i}: value of {len(item['value'])} chars")
    return problems
