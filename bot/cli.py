"""The `badgateway` command: diagnose from a terminal, run the Slack app, workers, the shell.

Bad input (a target, the sites file, a setting) ends in one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from checks.guard import TargetRefused
from checks.runner import diagnose, prepare
from checks.settings import Settings, SettingsError, load_settings, one_line
from checks.steps import all_steps
from checks.target import BadTarget

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="badgateway", description="Say why a gateway answers 502 Bad Gateway."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug output to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("diagnose", help="run the troubleshooting sequence against a target")
    d.add_argument("target", help="a URL, a host name, or a site's name from the sites file")
    d.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")
    d.add_argument("--json", action="store_true", help="print one JSON document")

    demo = sub.add_parser("demo", help="start a local failing site and diagnose it")
    demo.add_argument("--json", action="store_true", help="print one JSON document")

    for name, text in (("serve", "run the Slack app"), ("shell", "the bot in this terminal")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")

    w = sub.add_parser("worker", help="run a queue worker (needs REDIS_URL)")
    w.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")
    w.add_argument(
        "--queues",
        default="default",
        help="comma-separated queues to take jobs from, e.g. default,logs@web-1",
    )
    st = sub.add_parser("status", help="queue depth, job latency and workers (needs REDIS_URL)")
    st.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def _fail(message: str) -> int:
    # one_line: a message quoting input must stay the one line it promises to be.
    print(f"badgateway: {one_line(message)}", file=sys.stderr)
    return EXIT_BAD_INPUT


async def _diagnose(target: str, settings: Settings, as_json: bool) -> int:
    from bot.render.terminal import TerminalReport

    ctx = await prepare(target, settings)  # BadTarget / TargetRefused before any probe
    if as_json:
        result = await diagnose(ctx, settings)
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    report = TerminalReport()
    report.start(ctx.target.raw, ctx.target.url, list(all_steps()))
    result = await diagnose(ctx, settings, on_step=report.step)
    report.finish(result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "diagnose":
            settings = load_settings(args.sites)
            return asyncio.run(_diagnose(args.target, settings, args.json))
        if args.command == "demo":
            from bot.demo import run_demo

            return run_demo(as_json=args.json)
        from bot.config import ConfigError, load_config

        try:
            if args.command == "serve":
                from bot.slack.server import serve

                return serve(load_config(require_slack=True), load_settings(args.sites))
            if args.command == "shell":
                from bot.shell import run_shell

                return run_shell(load_settings(args.sites), sys.stdin, sys.stdout)
            config = load_config()
            if not config.redis_url:
                return _fail("REDIS_URL is not set: workers and status need the Redis queue")
            if args.command == "worker":
                from bot.queue.worker import run_worker

                queues = [q.strip() for q in args.queues.split(",") if q.strip()]
                return run_worker(config, load_settings(args.sites), queues)
            if args.command == "status":
                from bot.queue.status import show_status

                return show_status(config, args.json)
        except ConfigError as exc:
            return _fail(str(exc))
    except (SettingsError, BadTarget, TargetRefused) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return _fail(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
