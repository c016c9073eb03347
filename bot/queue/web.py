"""SAQ's own web UI over the badgateway queues: queued/active jobs, their kwargs, errors and
tries, workers, with retry and abort buttons.

    REDIS_URL=redis://… python -m badgateway.bot.queue.web --port 8081      # http://127.0.0.1:8081/

It binds to 127.0.0.1 by default: it can retry and abort jobs, so reach it through an SSH
tunnel rather than exposing it. Queues are listed as they exist when it starts (a new
``logs@host`` queue shows after a restart).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiohttp import web
from saq.web.aiohttp import create_app

from badgateway.bot.config import ConfigError, load_config
from badgateway.bot.queue.saq_queue import DEFAULT_QUEUE, DiagnosisQueue
from badgateway.bot.queue.store import DiagnosisStore
from badgateway.bot.queue.tuning import QueueTuning, connect_redis


async def build_app(redis_url: str, tuning: QueueTuning) -> web.Application:
    redis = connect_redis(redis_url, 10, tuning)
    names = sorted({DEFAULT_QUEUE, *await DiagnosisStore(redis, tuning.keep_s).queue_names()})
    return create_app([DiagnosisQueue(redis, name, tuning) for name in names])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m badgateway.bot.queue.web", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    args = p.parse_args(argv)
    try:
        config = load_config()
    except ConfigError as exc:
        print(f"badgateway: {exc}", file=sys.stderr)
        return 2
    if not config.redis_url:
        print("badgateway: REDIS_URL is not set", file=sys.stderr)
        return 2
    app = build_app(config.redis_url, config.tuning)
    web.run_app(app, host=args.host, port=args.port, print=None, loop=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
