"""`badgateway shell`: the Slack bot in a terminal, no Slack needed.

Type `/502 TARGET` and the thread appears as text: the root message, a reply per check, the
verdict with its buttons; `press rerun` (take, escalate, resolve) presses a button, and
`@badgateway rerun dns` mentions the bot in the thread. It is the same bot: ChatOps, the
SlackSink, the in-process carrier and the Block Kit renderer, talking to a terminal stand-in of
the few Slack Web API methods they call instead of to Slack.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any, TextIO

from badgateway.bot.pipeline import InProcessCarrier
from badgateway.bot.render.slack_blocks import ACTIONS
from badgateway.bot.render.slack_text import blocks_to_text
from badgateway.bot.slack.chatops import ChatOps, Command
from badgateway.bot.threads import Answer

SHELL_USER = "U0SHELL01"
SHELL_CHANNEL = "C0SHELL01"
BOT_USER = "U0BADGW01"
NAMES = {SHELL_USER: "you", BOT_USER: "badgateway", SHELL_CHANNEL: "shell"}

HELP = """\
Commands:
  /502 TARGET            diagnose a URL, host or site name (also /502 help | sites | status)
  press NAME             press a button on the last verdict: rerun, take, escalate, resolve
  @badgateway rerun [CHECK] | help    mention the bot in the current thread
  help                   this text
  quit                   leave (Ctrl-D works too)"""


class TerminalSlack:
    """The Web API methods the bot calls, answered in memory and shown on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.messages: dict[str, dict[str, Any]] = {}
        self.last_root: str | None = None
        self.root_updates = 0
        self._ts = itertools.count(1)

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    def show(self, message: dict[str, Any], prefix: str = "") -> None:
        text = blocks_to_text(message, NAMES)
        self.out.write("\n".join(prefix + line for line in text.splitlines()) + "\n")
        self.out.flush()

    def show_root(self) -> None:
        if self.last_root is not None:
            self.out.write("── the root message now ──\n")
            self.show(self.messages[self.last_root])

    async def auth_test(self, **_: Any) -> dict[str, Any]:
        return {"ok": True, "user_id": BOT_USER, "user": "badgateway"}

    async def chat_postMessage(self, **kw: Any) -> dict[str, Any]:
        ts = self._next_ts()
        message = {**kw, "ts": ts}
        self.messages[ts] = message
        if kw.get("thread_ts"):
            self.out.write("  │\n")
            self.show(message, "  │ ")
        else:
            self.last_root = ts
            self.out.write("\n")
            self.show(message)
        return {"ok": True, "channel": kw.get("channel"), "ts": ts}

    async def chat_update(self, **kw: Any) -> dict[str, Any]:
        message = self.messages[str(kw["ts"])]
        message.update({k: v for k, v in kw.items() if k in ("text", "blocks")})
        if message.get("thread_ts"):  # a step's message replaced (a result delivered again)
            self.show(message, "  │ (updated) ")
        else:
            self.root_updates += 1
        return {"ok": True, "ts": kw["ts"]}

    async def chat_postEphemeral(self, **kw: Any) -> dict[str, Any]:
        self.out.write(f"(only you can see this) {blocks_to_text(kw, NAMES)}\n")
        return {"ok": True}

    async def conversations_replies(self, **kw: Any) -> dict[str, Any]:
        root = kw.get("ts")
        found = [m for m in self.messages.values() if root in (m["ts"], m.get("thread_ts"))]
        return {"ok": True, "messages": found}

    async def conversations_history(self, **_: Any) -> dict[str, Any]:
        return {
            "ok": True,
            "messages": [m for m in self.messages.values() if not m.get("thread_ts")],
        }

    async def conversations_info(self, **kw: Any) -> dict[str, Any]:
        return {"ok": True, "channel": {"id": kw.get("channel"), "name": "shell"}}

    async def usergroups_users_list(self, **_: Any) -> dict[str, Any]:
        return {"ok": True, "users": [SHELL_USER]}


class Shell:
    """Reads lines, hands them to ``chatops`` as Slack would, shows what ``slack`` gets.
    Put together by bot.assemble.terminal.run_shell."""

    def __init__(
        self, chatops: ChatOps, carrier: InProcessCarrier, slack: TerminalSlack, out: TextIO
    ) -> None:
        self.out = out
        self.slack = slack
        self.carrier = carrier
        self.chatops = chatops
        self._updates_before = 0

    async def private(self, text: Answer | None) -> None:
        if text:
            message = text if isinstance(text, dict) else {"text": text}
            self.out.write(f"(only you can see this)\n{blocks_to_text(message, NAMES)}\n")
            self.out.flush()

    async def handle(self, line: str) -> bool:
        """Run one line; False when the user wants to leave."""
        line = line.strip()
        if not line:
            return True
        word, _, rest = line.partition(" ")
        if word in ("quit", "exit"):
            return False
        self._updates_before = self.slack.root_updates
        if word == "help":
            self.out.write(HELP + "\n")
        elif word.startswith("/"):
            command = Command(rest, SHELL_USER, SHELL_CHANNEL, "shell")
            await self.chatops.command(command, self.private, self.private)
            await self._finish()
        elif word == "press":
            await self._press(rest.strip().lower())
        elif word.lower() in ("@badgateway", "mention"):
            if self.slack.last_root is None:
                self.out.write("Start a diagnosis first: /502 TARGET\n")
                return True
            await self.chatops.mention(
                text=f"<@{BOT_USER}> {rest}",
                user=SHELL_USER,
                channel=SHELL_CHANNEL,
                ts=f"{time.time():.6f}",
                thread_ts=self.slack.last_root,
            )
            await self._finish()
        else:
            self.out.write(f"Unknown command {word!r}.\n{HELP}\n")
        self.out.flush()
        return True

    async def _press(self, name: str) -> None:
        if name not in ACTIONS:
            self.out.write(f"No button {name!r}; press one of: {', '.join(ACTIONS)}\n")
            return
        if self.slack.last_root is None:
            self.out.write("There is no verdict to press yet: /502 TARGET\n")
            return
        await self.chatops.action(
            name,
            user=SHELL_USER,
            channel=SHELL_CHANNEL,
            root_ts=self.slack.last_root,
            reply=self.private,
        )
        await self._finish()

    async def _finish(self) -> None:
        """Wait for the diagnosis started (if any); show the root if it changed."""
        await self.carrier.drain()
        await self.chatops.diagnoses.sink.roots.settle()  # root updates are coalesced
        if self.slack.root_updates != self._updates_before:
            self.slack.show_root()

    async def run(self, stdin: TextIO) -> int:
        interactive = hasattr(stdin, "isatty") and stdin.isatty()
        self.out.write("badgateway shell — the Slack bot in this terminal. Type help.\n")
        loop = asyncio.get_running_loop()
        try:
            while True:
                if interactive:
                    self.out.write("badgateway> ")
                    self.out.flush()
                line = await loop.run_in_executor(None, stdin.readline)
                if not line or not await self.handle(line):
                    break
        finally:
            await self.carrier.close()
        return 0
