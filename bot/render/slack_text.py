"""Block Kit messages as plain text: how the shell (and the README) show a Slack thread.

Reads the same blocks the bot posts to Slack, so what the terminal shows is what Slack shows:
headers, sections, context lines, and the buttons with the name to ``press`` them by.
"""

from __future__ import annotations

import re
from typing import Any

from badgateway.bot.render.slack_blocks import ACTIONS

_BUTTON_NAMES = {action_id: name for name, (action_id, _label) in ACTIONS.items()}
_DATE = re.compile(r"<!date\^[^|>]*\|([^>]*)>")
_USER = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_LINK = re.compile(r"<([^<>|]+)\|([^<>]*)>")
_BARE_LINK = re.compile(r"<((?:https?|mailto):[^<>]*)>")


def mrkdwn_to_text(text: str, names: dict[str, str] | None = None) -> str:
    """Slack's mrkdwn tokens made readable; escaped entities decoded last."""
    names = names or {}
    text = _DATE.sub(lambda m: m.group(1), text)
    text = _USER.sub(lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = _CHANNEL.sub(lambda m: "#" + (m.group(2) or names.get(m.group(1), m.group(1))), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", text)
    text = _BARE_LINK.sub(lambda m: m.group(1), text)
    text = text.replace("```", "")
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(obj: dict[str, Any] | None, names: dict[str, str]) -> str:
    if not obj:
        return ""
    text = str(obj.get("text") or "")
    return mrkdwn_to_text(text, names) if obj.get("type") == "mrkdwn" else text


def blocks_to_text(message: dict[str, Any], names: dict[str, str] | None = None) -> str:
    """One message (``text`` + ``blocks``) as lines of text."""
    names = names or {}
    blocks = message.get("blocks") or []
    if not blocks:
        return mrkdwn_to_text(str(message.get("text") or ""), names)
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"▌ {_text_of(block.get('text'), names)}")
        elif kind == "section":
            if block.get("text"):
                lines.append(_text_of(block["text"], names))
            for field_obj in block.get("fields") or []:
                lines.append(_text_of(field_obj, names))
        elif kind == "context":
            lines.append("  " + " · ".join(_text_of(e, names) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("─" * 40)
        elif kind == "actions":
            buttons, presses = [], []
            for element in block.get("elements") or []:
                if element.get("type") != "button":  # a menu: its placeholder
                    buttons.append(f"[{_text_of(element.get('placeholder'), names)} ▾]")
                    continue
                buttons.append(f"[{_text_of(element.get('text'), names)}]")
                presses.append(_BUTTON_NAMES.get(element.get("action_id", ""), "?"))
            pressing = "   (press " + " | ".join(presses) + ")" if presses else ""
            lines.append(" ".join(buttons) + pressing)
    return "\n".join(lines)
