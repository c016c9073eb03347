"""The `badgateway` command: diagnose from a terminal, run the Slack app, workers, the shell.

Parses the arguments, reads the settings and hands over to the process's assembly
(bot.assemble). Bad input (a target, the sites file, a setting) ends in one line on stderr
and exit 2; Redis out of reach (`worker`, `status`) in one line and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bot.assemble import terminal, web, worker
from bot.config import ConfigError, load_config, load_log_settings
from bot.logs import configure as configure_logging
from bot.queue.health import REDIS_DOWN, RedisUnreachable, redis_down
from bot.queue.tuning import TuningError
from checks.guard import TargetRefused
from checks.settings import SettingsError, load_settings, one_line
from checks.target import BadTarget

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1  # something the command needs (Redis) is not there now


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


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    # one_line: a message quoting input must stay the one line it promises to be.
    print(f"badgateway: {one_line(message)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        log_settings = load_log_settings()
    except ConfigError as exc:
        return _fail(str(exc))
    configure_logging(
        logging.DEBUG if args.verbose else logging.WARNING,
        log_settings.log_format,
        log_settings.secrets,
    )
    try:
        if args.command == "diagnose":
            settings = load_settings(args.sites)
            return terminal.run_diagnose(args.target, settings, as_json=args.json)
        if args.command == "demo":
            return terminal.run_demo(as_json=args.json)
        if args.command == "serve":
            return web.serve(load_config(require_slack=True), load_settings(args.sites))
        if args.command == "shell":
            return terminal.run_shell(load_settings(args.sites), sys.stdin, sys.stdout)
        config = load_config()
        if not config.redis_url:
            return _fail("REDIS_URL is not set: workers and status need the Redis queue")
        try:
            if args.command == "worker":
                queues = [q.strip() for q in args.queues.split(",") if q.strip()]
                return worker.run_worker(config, load_settings(args.sites), queues)
            if args.command == "status":
                return terminal.run_status(config, as_json=args.json)
        except RedisUnreachable as exc:
            return _fail(str(exc), EXIT_UNAVAILABLE)
        except REDIS_DOWN as exc:  # gone for longer than the clients' retries ride out
            return _fail(redis_down(config.redis_url, exc), EXIT_UNAVAILABLE)
    except (ConfigError, SettingsError, TuningError, BadTarget, TargetRefused) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return _fail(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
