"""browser-stack: serve the sidecar, or talk to a running one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import urllib.parse
from collections.abc import Sequence

from pythonjsonlogger.json import JsonFormatter

from browser_stack import client, doctor, memory
from browser_stack.config import Settings
from browser_stack.errors import ConfigError
from browser_stack.text import status_table

log = logging.getLogger("browser_stack")

EXIT_OK = 0
EXIT_FAILED = 1  # the sidecar answered with an error
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_UNREACHABLE = 3  # nothing answered at BROWSER_STACK_URL

# SIGTERM: supervisord's stop; SIGINT: Ctrl-C when run by hand.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="browser-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the sidecar (configured by environment variables)")
    doctor.add_arguments(
        sub.add_parser("doctor", help="check supervisord's programs and this host before rollout")
    )
    for name, text in (
        ("ensure", "start what is missing and wait until ready"),
        ("status", "show each program's state and readiness (starts nothing)"),
        ("stop", "stop the five programs"),
        ("memory", "memory per program (or: memory diff A.json B.json)"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument("--url", default=None, help="sidecar URL (BROWSER_STACK_URL)")
        command.add_argument("--json", action="store_true", help="print the JSON answer")
        if name == "ensure":
            command.add_argument(
                "--needs",
                action="append",
                default=None,
                help="gates to wait for: cdp, mcp, vnc (repeat or comma-separate; default all)",
            )
            command.add_argument("--timeout", type=float, default=30.0, help="seconds (30)")
        if name == "memory":
            command.add_argument("diff", nargs="*", help="diff A.json B.json: compare two samples")
            command.add_argument("--sample", default="", help="a name for this sample")
            command.add_argument(
                "--format", choices=("json", "markdown"), default="markdown", help="(markdown)"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(dict(os.environ))
    if args.command == "doctor":
        return doctor.command(args, dict(os.environ))
    try:
        if args.command == "ensure":
            return _ensure(args)
        if args.command == "status":
            return _status(args)
        if args.command == "memory":
            return _memory(args)
        return _stop(args)
    except client.ClientError as exc:
        if getattr(args, "json", False):
            print(json.dumps(exc.payload, indent=2))
        else:
            print(
                f"browser-stack: {exc.status} {exc.code}: {exc.payload.get('message', '')}",
                file=sys.stderr,
            )
        return EXIT_FAILED
    except client.Unreachable as exc:
        print(f"browser-stack: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _ensure(args: argparse.Namespace) -> int:
    needs = None
    if args.needs:
        needs = [n.strip() for item in args.needs for n in item.split(",") if n.strip()]
    payload = client.ensure_browser_stack(args.url, needs=needs, timeout=args.timeout)
    if args.json:
        print(json.dumps(payload, indent=2))
        return EXIT_OK
    outcome = "cold start" if payload["cold"] else "already running"
    print(f"ready ({outcome}, {payload['elapsed_ms']:.0f} ms)")
    if payload["started"]:
        print("started: " + ", ".join(payload["started"]))
    for name, value in payload["endpoints"].items():
        print(f"  {name:<7} {value}")
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    payload, _ = client.call("GET", f"{client.PREFIX}/status?memory=1", base_url=args.url)
    print(
        json.dumps(payload, indent=2) if args.json else status_table(payload),
        end="\n" if args.json else "",
    )
    return EXIT_OK


def _memory(args: argparse.Namespace) -> int:
    if args.diff:
        if len(args.diff) != 3 or args.diff[0] != "diff":
            print("browser-stack: usage: browser-stack memory diff A.json B.json", file=sys.stderr)
            return EXIT_USAGE
        samples = []
        for path in args.diff[1:]:
            try:
                with open(path, encoding="utf-8") as f:
                    samples.append(json.load(f))
            except (OSError, ValueError) as exc:
                print(f"browser-stack: cannot read sample {path}: {exc}", file=sys.stderr)
                return EXIT_USAGE
        print(memory.diff(samples[0], samples[1]))
        return EXIT_OK
    query = urllib.parse.urlencode({"sample": args.sample})
    payload, _ = client.call("GET", f"{client.PREFIX}/memory?{query}", base_url=args.url)
    if args.json or args.format == "json":
        print(json.dumps(payload, indent=2))
    else:
        print(memory.markdown(payload))
    return EXIT_OK


def _stop(args: argparse.Namespace) -> int:
    payload, _ = client.call("POST", f"{client.PREFIX}/stop", base_url=args.url)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        stopped = ", ".join(payload["stopped"]) or "nothing was running"
        print(f"stopped: {stopped} ({payload['elapsed_ms']:.0f} ms)")
    return EXIT_OK


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        # One JSON object a line, with the structured fields the code logs
        # (program, state, elapsed_ms, event, reason) as keys.
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=False)
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


def serve(env: dict[str, str]) -> int:
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"browser-stack: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings)
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:
        print(f"browser-stack: cannot listen on {settings.listen}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


async def _serve(settings: Settings) -> None:
    from aiohttp import web

    from browser_stack.http_api import create_app

    runner = web.AppRunner(create_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    site: web.BaseSite
    if settings.listen.path is not None:
        # A socket left by a previous run would make the bind fail.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(settings.listen.path)
        site = web.UnixSite(runner, settings.listen.path)
    else:
        site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
    try:
        await site.start()
        log.info("listening on %s, supervisord at %s", settings.listen, settings.supervisor_url)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
