"""Lab fixtures for the job queue: a real redis-server, real `badgateway worker` processes,
a loopback HTTP server that answers as slowly as asked, and a recording sink.

Use::

    def test_x(redis_server, queue_lab):
        redis_server.url                 # redis://127.0.0.1:PORT/0 (AOF on, everysec)
        redis_server.restart()           # same port, same data directory (AOF replayed)
        redis_server.crash_restart()     # the same after a SIGKILL (no final AOF flush)
        worker = queue_lab.start_worker("a", queues="default", concurrency=10)
        worker.kill()                    # SIGKILL;  worker.terminate() is SIGTERM
        queue_lab.http.url(3.0)          # http://127.0.0.1:PORT/sleep/3.0 (answers after 3 s)
        await queue_lab.submit("http://127.0.0.1:.../sleep/0", ["lab_fetch", "lab_ping"])
        queue_lab.wait_concluded([request_id], timeout=20)
        queue_lab.calls()                # every sink call made by any worker, in order

Workers run with ``BADGATEWAY_SINK=tests.lab.fixtures_redis:lab_sink``: the ``LabSink``
records each call in Redis (list ``lab:calls``), so a test counts deliveries across
processes. It refuses (raises, like a chat service rejecting a message) results of the steps
named in ``BADGATEWAY_LAB_REJECT`` (comma-separated), except dead-letter records.

The lab steps (``lab_fetch``: GET the target URL; ``lab_ping``: TCP connect; ``lab_tail``:
routed like a log step; ``lab_flaky``: fast, for the refusing sink) are added to the step
registry of the worker processes and of the test process by ``install_lab_steps``, so the
queue runs them exactly as it runs the real steps.

Queue timings in the lab (``LAB_QUEUE_ENV``): heartbeat 1 s, sweep 0.5 s, abort wait 0.5 s,
retry delay 0.2 s: a SIGKILLed worker's job re-runs within about 3 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import ssl
import sys
import threading
import time
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import redis

import badgateway.checks.steps
from badgateway.bot.config import BotConfig
from badgateway.bot.pipeline import DiagnosisRequest
from badgateway.bot.queue.carrier import QueueCarrier
from badgateway.bot.queue.tuning import QueueTuning, connect_redis
from badgateway.checks.context import ProbeContext
from badgateway.checks.model import Diagnosis, Finding, Status, StepResult
from badgateway.checks.runner import prepare
from badgateway.checks.settings import Settings, load_settings
from badgateway.checks.steps import ANYWHERE, Parts, Step
from tests.lab import REPO
from tests.lab.process import ManagedProcess, free_port, require_binary, wait_for_port
from tests.lab.slack_limits import UNLIMITED_ENV

CALLS_KEY = "lab:calls"
REJECTED_KEY = "lab:rejected"
LAB_QUEUE_ENV = {
    "BADGATEWAY_QUEUE_HEARTBEAT_S": "1",
    "BADGATEWAY_QUEUE_SWEEP_S": "0.5",
    "BADGATEWAY_QUEUE_ABORT_WAIT_S": "0.5",
    "BADGATEWAY_QUEUE_RETRY_DELAY_S": "0.2",
    "BADGATEWAY_QUEUE_RETRY_DELAY_CAP_S": "1",
    "BADGATEWAY_QUEUE_JOB_MARGIN_S": "5",
    "BADGATEWAY_QUEUE_SINK_TIMEOUT_S": "3",
    "BADGATEWAY_QUEUE_WORKER_INFO_S": "1",
    "BADGATEWAY_QUEUE_DEQUEUE_TIMEOUT_S": "0.5",
}
LAB_TUNING = QueueTuning.from_env(LAB_QUEUE_ENV)


# -- redis-server --------------------------------------------------------------------------


class RedisServer:
    """A real redis-server on a loopback port picked at run time, persisting to an AOF."""

    def __init__(self, directory: Path) -> None:
        self.binary = require_binary("redis-server", "/usr/bin/redis-server")
        self.directory = directory
        self.port = free_port()
        self.process: ManagedProcess | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        argv = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--maxclients", "2000",
        ]  # fmt: skip
        log = self.directory / f"redis-{self.starts}.log"
        self.process = ManagedProcess(argv, log)
        wait_for_port(self.port, timeout=10)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:  # the port opens before the AOF is loaded
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        """SIGTERM: redis-server flushes the AOF and exits (a clean restart)."""
        if self.process is not None:
            self.process.stop(signal.SIGTERM, timeout=10)
            self.process = None

    def restart(self, down_s: float = 0.5) -> float:
        """Stop, stay down ``down_s``, start again on the same port; returns the outage (s)."""
        t0 = time.monotonic()
        self.stop()
        time.sleep(down_s)
        self.start()
        return time.monotonic() - t0

    def crash_restart(self, down_s: float = 0.5) -> float:
        """SIGKILL (a crash: no final AOF flush or fsync), stay down ``down_s``, start again on
        the same port and data directory (the AOF replayed); returns the outage (s)."""
        t0 = time.monotonic()
        if self.process is not None:
            process, self.process = self.process, None
            process.stop(signal.SIGKILL, timeout=10)  # returns once the process is gone
            if process.proc.returncode != -signal.SIGKILL:
                raise RuntimeError(
                    f"redis-server had exited ({process.proc.returncode}) before the crash:\n"
                    + process.log_path.read_text(errors="replace")[-2000:]  # log closed
                )
        time.sleep(down_s)
        self.start()
        return time.monotonic() - t0

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- a loopback HTTP server that sleeps as long as the path says ------------------------------


class SleepyHTTPServer:
    """GET /sleep/<seconds> answers 200 after that long; counts requests and the peak number
    in flight at once (what a worker's concurrency limit bounds). GET /held/<seconds> answers
    once ``release()`` is called (or after that long at most): requests pile up however slowly
    a loaded machine sends them."""

    def __init__(self) -> None:
        lab = self
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.in_flight = 0
        self.peak = 0
        self.requests: list[tuple[float, str]] = []  # (monotonic time, path)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def do_GET(self) -> None:
                with lab.lock:
                    lab.in_flight += 1
                    lab.peak = max(lab.peak, lab.in_flight)
                    lab.requests.append((time.monotonic(), self.path))
                try:
                    delay = 0.0
                    if self.path.startswith(("/sleep/", "/held/")):
                        with contextlib.suppress(ValueError):
                            delay = min(60.0, float(self.path.split("/")[2]))
                    if self.path.startswith("/held/"):
                        lab.released.wait(delay)
                    else:
                        time.sleep(min(10.0, delay))
                    body = b"ok\n"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    with contextlib.suppress(OSError):
                        self.wfile.write(body)
                finally:
                    with lab.lock:
                        lab.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024  # hundreds of probes connect at once
            daemon_threads = True

        self.server = Server(("127.0.0.1", free_port()), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, delay_s: float = 0.0) -> str:
        return f"http://127.0.0.1:{self.port}/sleep/{delay_s:g}"

    def held_url(self, at_most_s: float) -> str:
        """A URL answered on ``release()``, or after ``at_most_s`` if nothing releases it."""
        return f"http://127.0.0.1:{self.port}/held/{at_most_s:g}"

    def release(self) -> None:
        """Answer every held request, and answer later ones at once."""
        self.released.set()

    def count(self, path_prefix: str = "/") -> int:
        with self.lock:
            return sum(1 for _, p in self.requests if p.startswith(path_prefix))

    def wait_for_requests(self, n: int, path_prefix: str = "/", timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(path_prefix) >= n:
                return time.monotonic()
            time.sleep(0.02)
        raise TimeoutError(f"the lab HTTP server did not see {n} request(s) to {path_prefix}")

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


# -- lab steps and the recording sink (imported by the worker processes) -------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms of CPU; once per process, not once per probe.
    return ssl.create_default_context()


async def _lab_fetch(ctx: ProbeContext) -> StepResult:
    async with httpx.AsyncClient(timeout=ctx.probe_timeout(), verify=_tls_context()) as client:
        response = await client.get(ctx.target.url)
    finding = Finding("lab_http", f"HTTP {response.status_code}", Status.OK)
    return StepResult.from_findings("lab_fetch", f"answered {response.status_code}", [finding])


async def _lab_ping(ctx: ProbeContext) -> StepResult:
    address = ctx.addresses[0] if ctx.addresses else ctx.target.host
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(address, ctx.target.port), ctx.probe_timeout()
    )
    writer.close()
    finding = Finding("lab_tcp", f"connected to {address}:{ctx.target.port}", Status.OK)
    return StepResult.from_findings("lab_ping", "port open", [finding])


async def _lab_quick(name: str, ctx: ProbeContext) -> StepResult:
    return StepResult.from_findings(name, f"{name} ran", [Finding(name, f"{name} ran")])


def _lab_tail_places(ctx: ProbeContext) -> tuple[str, ...]:
    site = ctx.target.site
    return tuple(sorted({s.host or ANYWHERE for s in site.logs})) if site else ()


async def _lab_tail_part(ctx: ProbeContext, place: str) -> dict[str, Any]:
    """Says which worker read the part; crashes where ``BADGATEWAY_LAB_PART_CRASH`` says."""
    if place and place in os.environ.get("BADGATEWAY_LAB_PART_CRASH", "").split(","):
        raise RuntimeError(f"the disk of {place} is on fire")
    return {"worker": os.environ.get("BADGATEWAY_WORKER_NAME", "")}


def _lab_tail_assemble(
    ctx: ProbeContext, parts: Mapping[str, dict[str, Any]], missing: Mapping[str, str]
) -> StepResult:
    findings = [
        Finding("lab_part", f"{place or '*'} read by {part['worker']}")
        for place, part in sorted(parts.items())
    ]
    findings += [
        Finding("lab_part_missing", f"{place or '*'} missing: {reason}", Status.WARN)
        for place, reason in sorted(missing.items())
    ]
    return StepResult.from_findings("lab_tail", f"{len(parts)} part(s) read", findings)


LAB_STEPS: tuple[Step, ...] = (
    Step("lab_fetch", 901, "Lab: fetch the URL", _lab_fetch),
    Step("lab_ping", 902, "Lab: TCP connect", _lab_ping),
    # Like the logs step: read where the site's logs lie (one part per host).
    Step(
        "lab_tail",
        903,
        "Lab: read logs",
        functools.partial(_lab_quick, "lab_tail"),
        Parts(_lab_tail_places, _lab_tail_part, _lab_tail_assemble, queue="logs"),
    ),
    Step("lab_flaky", 904, "Lab: shown badly", functools.partial(_lab_quick, "lab_flaky")),
)


def install_lab_steps() -> None:
    """Add LAB_STEPS to ``checks.steps``' registry in this process (idempotent)."""
    if getattr(badgateway.checks.steps.all_steps, "lab", False):
        return
    original = badgateway.checks.steps.all_steps

    @functools.cache
    def with_lab_steps() -> tuple[Step, ...]:
        return (*original(), *LAB_STEPS)

    with_lab_steps.lab = True  # type: ignore[attr-defined]
    badgateway.checks.steps.all_steps = with_lab_steps  # type: ignore[assignment]


class LabSink:
    """A ResultSink that records every call in Redis, for counting across processes."""

    def __init__(self, config: BotConfig) -> None:
        self.redis = connect_redis(str(config.redis_url), 20, LAB_TUNING)
        self.worker = os.environ.get("BADGATEWAY_WORKER_NAME", f"pid-{os.getpid()}")
        self.reject = {s for s in os.environ.get("BADGATEWAY_LAB_REJECT", "").split(",") if s}

    async def _record(self, entry: dict[str, Any]) -> None:
        entry.update(worker=self.worker, at=time.time())
        await cast("Awaitable[int]", self.redis.rpush(CALLS_KEY, json.dumps(entry)))

    async def step_finished(self, request: DiagnosisRequest, result: StepResult) -> None:
        codes = [f.code for f in result.findings]
        if result.name in self.reject and "step_dead_letter" not in codes:
            await cast(
                "Awaitable[int]",
                self.redis.rpush(REJECTED_KEY, json.dumps([request.id, result.name])),
            )
            raise RuntimeError("the chat service rejected the message (invalid_blocks)")
        await self._record(
            {
                "kind": "step",
                "id": request.id,
                "step": result.name,
                "status": result.status.value,
                "summary": result.summary,
                "codes": codes,
                "messages": [f.message for f in result.findings],
            }
        )

    async def diagnosis_finished(self, request: DiagnosisRequest, diagnosis: Diagnosis) -> None:
        await self._record(
            {
                "kind": "verdict",
                "id": request.id,
                "cause": diagnosis.verdict.cause.value,
                "steps": [s.name for s in diagnosis.steps],
                "baseline": diagnosis.verdict.baseline,
            }
        )

    async def aclose(self) -> None:
        await self.redis.aclose()


def lab_sink(config: BotConfig) -> LabSink:
    """The BADGATEWAY_SINK factory the lab's workers use; also installs the lab steps."""
    install_lab_steps()
    return LabSink(config)


# -- the queue lab: sites file, workers, submissions, assertions ---------------------------


@dataclass
class LabWorker:
    name: str
    queues: str
    process: ManagedProcess
    prefix: str = "bgw"  # its BADGATEWAY_REDIS_PREFIX

    @property
    def pid(self) -> int:
        return int(self.process.proc.pid)

    def kill(self) -> None:
        os.killpg(self.pid, signal.SIGKILL)
        self.process.proc.wait(10)

    def terminate(self) -> None:
        os.killpg(self.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return int(self.process.proc.wait(timeout))

    def output(self) -> str:
        return self.process.output()


@dataclass
class QueueLab:
    redis_server: RedisServer
    http: SleepyHTTPServer
    directory: Path
    sites_path: Path
    settings: Settings
    workers: list[LabWorker] = field(default_factory=list)
    carrier: QueueCarrier | None = None

    @property
    def config(self) -> BotConfig:
        return BotConfig(redis_url=self.redis_server.url, sites_path=str(self.sites_path))

    def start_worker(
        self,
        name: str,
        queues: str = "default",
        concurrency: int = 10,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> LabWorker:
        worker_env = {
            **os.environ,
            **LAB_QUEUE_ENV,
            **UNLIMITED_ENV,  # a worker posting to Slack posts to a stand-in without limits
            "PYTHONPATH": str(REPO),
            "REDIS_URL": self.redis_server.url,
            "BADGATEWAY_SITES": str(self.sites_path),
            "BADGATEWAY_SINK": "tests.lab.fixtures_redis:lab_sink",
            "BADGATEWAY_WORKER_NAME": name,
            "BADGATEWAY_WORKER_CONCURRENCY": str(concurrency),
            **(env or {}),
        }
        argv = [sys.executable, "-m", "badgateway.bot.cli", "worker", "--queues", queues]
        if worker_env.get("BADGATEWAY_PROFILE"):  # bench/queue_bench.py --profile FILE
            argv[1:1] = ["-m", "cProfile", "-o", worker_env["BADGATEWAY_PROFILE"]]
        log = self.directory / f"worker-{name}-{len(self.workers)}.log"
        process = ManagedProcess(argv, log, env=worker_env, cwd=str(REPO))
        prefix = worker_env.get("BADGATEWAY_REDIS_PREFIX", "bgw")
        worker = LabWorker(name, queues, process, prefix)
        self.workers.append(worker)
        if wait:
            self.wait_worker_ready(worker)
        return worker

    def wait_worker_ready(self, worker: LabWorker, timeout: float = 15.0) -> None:
        """Ready once every queue it serves has its worker-info record in Redis."""
        client = self.redis_server.client()
        keys = [
            f"{worker.prefix}:saq:{q}:worker_info:{worker.name}-{q}"
            for q in worker.queues.split(",")
        ]
        deadline = time.monotonic() + timeout
        try:
            while not all(client.exists(k) for k in keys):
                if worker.process.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {worker.name} did not start:\n{worker.output()}")
                time.sleep(0.05)
        finally:
            client.close()

    async def submit(self, target: str, steps: list[str]) -> DiagnosisRequest:
        if self.carrier is None:
            self.carrier = QueueCarrier(self.config, self.settings, LAB_TUNING)
        ctx = await prepare(target, self.settings)
        request = DiagnosisRequest.new(ctx, steps=steps)
        await self.carrier.submit(request)
        return request

    def queued(self, queue: str) -> int:
        """How many jobs wait on ``queue`` (none taken yet)."""
        client = self.redis_server.client()
        try:
            return cast("int", client.llen(f"bgw:saq:{queue}:queued"))
        finally:
            client.close()

    def calls(self) -> list[dict[str, Any]]:
        client = self.redis_server.client()
        try:
            return [json.loads(c) for c in cast("list[bytes]", client.lrange(CALLS_KEY, 0, -1))]
        finally:
            client.close()

    def rejected(self) -> list[list[str]]:
        client = self.redis_server.client()
        try:
            return [json.loads(c) for c in cast("list[bytes]", client.lrange(REJECTED_KEY, 0, -1))]
        finally:
            client.close()

    async def wait_concluded(self, ids: list[str], within_s: float) -> list[dict[str, Any]]:
        """Wait until every diagnosis in ``ids`` has its verdict; returns all calls."""
        deadline = time.monotonic() + within_s
        wanted = set(ids)
        while True:
            calls = self.calls()
            done = {c["id"] for c in calls if c["kind"] == "verdict"}
            if wanted <= done:
                return calls
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {w.name}\n{w.output()[-3000:]}" for w in self.workers)
                raise TimeoutError(f"not concluded: {sorted(wanted - done)}\n{logs}")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        for worker in self.workers:
            worker.process.stop(signal.SIGTERM, timeout=10)


def write_lab_sites(path: Path, http_port: int, timeout_s: float = 5, budget_s: float = 8) -> None:
    path.write_text(
        f"""
[settings]
allow_networks = ["127.0.0.0/8"]
timeout_s = {timeout_s:g}
diagnosis_budget_s = {budget_s:g}

[[site]]
name = "shop"
url = "http://127.0.0.2:{http_port}/"
logs = [{{ path = "/var/log/nginx/error.log", format = "nginx", host = "web-1" }}]

[[site]]
name = "split"
url = "http://127.0.0.3:{http_port}/"
logs = [
  {{ path = "/var/log/nginx/error.log", format = "nginx", host = "web-1" }},
  {{ path = "/var/log/php8.2-fpm.log", format = "php-fpm", host = "app-1" }},
  {{ path = "/var/log/haproxy.log", format = "haproxy" }},
]
""",
        encoding="utf-8",
    )


@pytest.fixture
async def queue_lab(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    # Recorded so that the registry is the real one again after this test.
    monkeypatch.setattr(badgateway.checks.steps, "all_steps", badgateway.checks.steps.all_steps)
    install_lab_steps()
    http = SleepyHTTPServer()
    sites = tmp_path / "sites.toml"
    write_lab_sites(sites, http.port)
    lab = QueueLab(redis_server, http, tmp_path, sites, load_settings(sites))
    try:
        yield lab
    finally:
        if lab.carrier is not None:
            await lab.carrier.close()
        lab.close()
        http.close()


def step_calls(calls: list[dict[str, Any]], kind: str = "step") -> dict[tuple[str, str], int]:
    """How many times each (diagnosis id, step) — or each id for verdicts — reached the sink."""
    counts: dict[tuple[str, str], int] = {}
    for call in calls:
        if call["kind"] == kind:
            key = (call["id"], call.get("step", ""))
            counts[key] = counts.get(key, 0) + 1
    return counts


__all__ = [
    "LAB_QUEUE_ENV",
    "LAB_TUNING",
    "QueueLab",
    "RedisServer",
    "SleepyHTTPServer",
    "lab_sink",
    "step_calls",
]
