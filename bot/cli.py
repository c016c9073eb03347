"""The `badgateway` command: diagnose from a terminal, run the Slack app, workers, the shell.

Parses the arguments, reads the settings once (bot.config: the environment over `.env`, then
the sites file) and hands over to the process's assembly (bot.assemble). Bad input (a target,
the sites file, a setting) ends in one line on stderr and exit 2, before anything starts;
Redis out of reach (`worker`, `status`) in one line and exit 1. `check-config` exits 0 when
every check passed, 1 when one failed and 2 when the configuration does not load.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from badgateway.bot.assemble import check_config, terminal, web, worker
from badgateway.bot.config import ConfigError, load_config, load_log_settings
from badgateway.bot.history_store import default_state_file
from badgateway.bot.logs import configure as configure_logging
from badgateway.bot.queue.health import REDIS_DOWN, RedisUnreachable, redis_down
from badgateway.bot.queue.tuning import TuningError
from badgateway.checks.guard import TargetRefused
from badgateway.checks.markers import MarkerError
from badgateway.checks.settings import SettingsError, one_line
from badgateway.checks.target import BadTarget

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1  # something the command needs (Redis) is not there now
FROM_NEEDS_REDIS = "--from needs REDIS_URL: the places are reached through the queue"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="badgateway", description="Say why a gateway answers 502 Bad Gateway."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug output to stderr")
    p.add_argument("--version", action="version", version=f"badgateway {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("diagnose", help="run the troubleshooting sequence against a target")
    d.add_argument("target", help="a URL, a host name, or a site's name from the sites file")
    d.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")
    d.add_argument("--json", action="store_true", help="print one JSON document")
    d.add_argument(
        "--state",
        metavar="FILE",
        help="compare with earlier runs kept in FILE, and keep this one there "
        "(default: $XDG_STATE_HOME/badgateway/state.json)",
    )
    d.add_argument("--no-state", action="store_true", help="neither compare nor keep this run")
    d.add_argument(
        "--from",
        dest="places",
        metavar="PLACES",
        help="probe from these vantages (comma-separated, e.g. eu-west,us-east) and from "
        "here, through the queue (needs REDIS_URL)",
    )

    demo = sub.add_parser("demo", help="start a local failing site and diagnose it")
    demo.add_argument("--json", action="store_true", help="print one JSON document")

    for name, text in (("serve", "run the Slack app"), ("shell", "the bot in this terminal")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")
        if name == "serve":
            s.add_argument(
                "--host",
                default=web.DEFAULT_HOST,
                help="address to listen on (default: %(default)s, every IPv4 address)",
            )
    c = sub.add_parser("check-config", help="check the settings and what they point at")
    c.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")
    c.add_argument("--json", action="store_true", help="print one JSON document")

    w = sub.add_parser("worker", help="run a queue worker (needs REDIS_URL)")
    w.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")
    w.add_argument(
        "--queues",
        help="comma-separated queues to take jobs from, e.g. default,logs@web-1 "
        "(default: default; with --vantage: none but its place's)",
    )
    w.add_argument(
        "--vantage",
        metavar="PLACE",
        help="probe from here as the place PLACE (a name in the sites file's vantages): "
        "serve probe@PLACE; needs REDIS_URL only",
    )
    for name, text in (
        ("mark", "record a deploy or change against a site's history"),
        ("history", "a site's recent checks, outages, changes and markers"),
    ):
        h = sub.add_parser(name, help=text)
        h.add_argument("site", help="a site's name (or URL) from the sites file")
        if name == "mark":
            h.add_argument("text", help="what was done, e.g. 'deployed shop v1.2.3'")
            h.add_argument("--by", default="", help="who did it (a person, CI)")
            h.add_argument("--kind", default="change", help="deploy, change, config, rollback…")
        else:
            h.add_argument("--json", action="store_true", help="print one JSON document")
            h.add_argument("--hours", type=float, default=24.0, help="how far back (default 24)")
        h.add_argument("--sites", metavar="FILE", help="sites file (default: $BADGATEWAY_SITES)")
        h.add_argument(
            "--state",
            metavar="FILE",
            help="without REDIS_URL: the state file `diagnose` uses "
            "(default: $XDG_STATE_HOME/badgateway/state.json)",
        )
    st = sub.add_parser("status", help="queue depth, job latency and workers (needs REDIS_URL)")
    st.add_argument("--json", action="store_true", help="print one JSON document")
    return p


def _version() -> str:
    """The installed package's version (what `pip show badgateway` says)."""
    try:
        return metadata.version("badgateway")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


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
        if args.command == "demo":
            return terminal.run_demo(as_json=args.json)
        if args.command == "check-config":
            return check_config.run_check_config(args.sites, as_json=args.json)
        # Every setting, read and checked once, before anything starts.
        config = load_config(require_slack=args.command == "serve")
        if args.command == "diagnose" and args.places is not None:
            if not config.redis_url:
                return _fail(FROM_NEEDS_REDIS)
            places = [p.strip() for p in args.places.split(",") if p.strip()]
            try:
                return terminal.run_diagnose_from(
                    config, config.load_sites(args.sites), args.target, places, as_json=args.json
                )
            except RedisUnreachable as exc:
                return _fail(str(exc), EXIT_UNAVAILABLE)
            except REDIS_DOWN as exc:
                return _fail(redis_down(config.redis_url, exc), EXIT_UNAVAILABLE)
        if args.command == "diagnose":
            settings = config.load_sites(args.sites)
            state = None if args.no_state else Path(args.state or default_state_file())
            return terminal.run_diagnose(
                args.target, settings, as_json=args.json, state=state, retention=config.history
            )
        if args.command in ("mark", "history"):
            state = Path(args.state or default_state_file())
            settings = config.load_sites(args.sites)
            try:
                if args.command == "history":
                    return terminal.run_history(
                        config,
                        settings,
                        args.site,
                        hours=args.hours,
                        as_json=args.json,
                        state=state,
                    )
                return terminal.run_mark(
                    config, settings, args.site, args.text, by=args.by, kind=args.kind, state=state
                )
            except REDIS_DOWN as exc:
                if not config.redis_url:
                    return _fail(f"cannot use the state file {state}: {exc}", EXIT_UNAVAILABLE)
                return _fail(redis_down(config.redis_url, exc), EXIT_UNAVAILABLE)
        if args.command == "serve":
            return web.serve(config, config.load_sites(args.sites, alerting=True), args.host)
        if args.command == "shell":
            return terminal.run_shell(
                config.load_sites(args.sites), sys.stdin, sys.stdout, config.history
            )
        if not config.redis_url:
            return _fail("REDIS_URL is not set: workers and status need the Redis queue")
        try:
            if args.command == "worker":
                queues = [q.strip() for q in (args.queues or "").split(",") if q.strip()]
                if args.vantage is not None:
                    settings = config.load_sites(args.sites)
                    return worker.run_vantage_worker(config, settings, args.vantage, queues)
                settings = config.load_sites(args.sites, alerting=True)
                return worker.run_worker(config, settings, queues)
            if args.command == "status":
                return terminal.run_status(config, as_json=args.json)
        except RedisUnreachable as exc:
            return _fail(str(exc), EXIT_UNAVAILABLE)
        except REDIS_DOWN as exc:  # gone for longer than the clients' retries ride out
            return _fail(redis_down(config.redis_url, exc), EXIT_UNAVAILABLE)
    except (ConfigError, SettingsError, TuningError, BadTarget, TargetRefused, MarkerError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130
    return _fail(f"unknown command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
