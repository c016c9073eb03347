"""Terminal rendering of a diagnosis: a live progress line while steps run, each step as it
finishes, then the verdict. Colour only on a terminal, and never when NO_COLOR is set."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TextIO

from badgateway.checks.model import Diagnosis, Status, StepResult
from badgateway.checks.places import table_lines
from badgateway.checks.steps import Step

_MARK = {
    Status.OK: ("✔", "32"),
    Status.WARN: ("!", "33"),
    Status.FAIL: ("✘", "31"),
    Status.ERROR: ("✘", "35"),
    Status.SKIPPED: ("-", "2"),
}
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class TerminalReport:
    def __init__(self, out: TextIO = sys.stdout, *, color: bool | None = None) -> None:
        self.out = out
        tty = hasattr(out, "isatty") and out.isatty()
        self.live = tty
        self.color = (tty and "NO_COLOR" not in os.environ) if color is None else color
        self._pending: list[Step] = []
        self._spin_task: asyncio.Task[None] | None = None

    def _c(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def start(self, target: str, url: str, steps: list[Step]) -> None:
        self._pending = list(steps)
        self.out.write(self._c("1", f"Diagnosing {target}") + f"  ({url})\n")
        self.out.flush()
        if self.live:
            self._spin_task = asyncio.get_running_loop().create_task(self._spin())

    async def _spin(self) -> None:
        started, i = time.monotonic(), 0
        while True:
            names = ", ".join(s.title for s in self._pending) or "verdict"
            elapsed = time.monotonic() - started
            line = f"{_SPINNER[i % len(_SPINNER)]} running: {names} ({elapsed:.1f} s)"
            self.out.write("\r\x1b[2K" + self._c("2", line))
            self.out.flush()
            i += 1
            await asyncio.sleep(0.1)

    def _clear_line(self) -> None:
        if self.live:
            self.out.write("\r\x1b[2K")

    def step(self, result: StepResult) -> None:
        self._pending = [s for s in self._pending if s.name != result.name]
        self._clear_line()
        mark, code = _MARK[result.status]
        head = f"{self._c(code, mark)} {self._c('1', result.name.ljust(9))} {result.summary}"
        self.out.write(f"{head}  {self._c('2', f'{result.duration_ms} ms')}\n")
        for finding in result.findings:
            if finding.severity.rank >= Status.WARN.rank or result.status is Status.OK:
                fmark, fcode = _MARK[finding.severity]
                self.out.write(f"    {self._c(fcode, fmark)} {finding.message}\n")
        for line in table_lines(result.details):  # one line per place, when probed from several
            self.out.write(f"    {self._c('2', line)}\n")
        self.out.flush()

    def finish(self, diagnosis: Diagnosis) -> None:
        if self._spin_task is not None:
            self._spin_task.cancel()
        self._clear_line()
        verdict = diagnosis.verdict
        bad = verdict.cause.value not in ("healthy",)
        self.out.write("\n" + self._c("1;31" if bad else "1;32", f"Verdict: {verdict.cause.value}"))
        self.out.write(f"  ({diagnosis.duration_ms} ms)\n{verdict.summary}\n")
        if verdict.next_steps:
            self.out.write(self._c("1", "Next steps:") + "\n")
            for n, text in enumerate(verdict.next_steps, 1):
                self.out.write(f"  {n}. {text}\n")
        if verdict.changes:
            self.out.write(self._c("1", "What changed:") + "\n")
            for change in verdict.changes:
                mark = self._c("31", "✘") if change.at_failing_layer else self._c("2", "·")
                self.out.write(f"  {mark} {change.message}\n")
        if verdict.baseline:
            self.out.write(self._c("2", verdict.baseline) + "\n")
        self.out.flush()
