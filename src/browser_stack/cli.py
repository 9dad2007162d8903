"""browser-stack: serve the sidecar, or talk to a running one."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.parse
from collections.abc import Sequence
from typing import NoReturn

from browser_stack import client
from browser_stack.config import MAX_ENSURE_TIMEOUT_S, Settings
from browser_stack.errors import ConfigError, StartupError
from browser_stack.text import status_table

EXIT_OK = 0
EXIT_FAILED = 1  # the sidecar answered with an error
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_UNREACHABLE = 3  # nothing answered at BROWSER_STACK_URL
EXIT_STARTUP = 4  # serve could not start: an address taken, a socket path refused
STDERR_LINES = 5  # of a failed program's stderr tail, printed by `ensure`


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit 2, like bad configuration."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    try:
        client.check_timeout(seconds)  # the client's limits, one definition
    except client.InvalidArgument:
        raise argparse.ArgumentTypeError(
            f"{text!r} must be more than 0 and at most {MAX_ENSURE_TIMEOUT_S:g} seconds"
        ) from None
    return seconds


def _needs(text: str) -> list[str]:
    try:
        return client.check_needs(text)  # the client's gate names, one definition
    except client.InvalidArgument as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="browser-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the sidecar (configured by environment variables)")
    doctor = sub.add_parser(
        "doctor", help="check supervisord's programs and this host before rollout"
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument(
        "--static",
        action="store_true",
        help="read supervisord's files (--config) instead of asking the running supervisord",
    )
    doctor.add_argument("--config", default=None, help="supervisord's config file (with --static)")
    for name, text in (
        ("ensure", "start what is missing and wait until ready"),
        ("status", "show each program's state and readiness (starts nothing)"),
        ("stop", "stop the five programs"),
        ("memory", "memory per program (or: memory diff A.json B.json)"),
    ):
        command = sub.add_parser(name, help=text)
        command.add_argument(
            "--url",
            default=None,
            help="sidecar: http://host:port, host:port or unix:/path (BROWSER_STACK_URL)",
        )
        command.add_argument("--json", action="store_true", help="print the JSON answer")
        if name == "ensure":
            command.add_argument(
                "--needs",
                action="append",
                type=_needs,
                default=None,
                help="gates to wait for: cdp, mcp, vnc (repeat or comma-separate; default all)",
            )
            command.add_argument(
                "--timeout",
                type=_timeout,
                default=None,
                help="seconds (default: the sidecar's BROWSER_STACK_ENSURE_TIMEOUT)",
            )
        if name == "memory":
            command.add_argument("diff", nargs="*", help="diff A.json B.json: compare two samples")
            command.add_argument("--sample", default="", help="a name for this sample")
            command.add_argument(
                "--format", choices=("json", "markdown"), default="markdown", help="(markdown)"
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or bad arguments (one line printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command == "serve":
        return serve(dict(os.environ))
    if args.command == "doctor":
        # Here, not at the top: `serve` never loads the doctor (its checks, supervisor's
        # config parser, psutil).
        from browser_stack import doctor

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
            print(f"browser-stack: {exc.status} {exc.code}: {exc.message}", file=sys.stderr)
            tail = [line for line in str(exc.payload.get("stderr_tail", "")).splitlines() if line]
            for line in tail[-STDERR_LINES:]:
                print(f"    {line}", file=sys.stderr)
        return EXIT_FAILED
    except client.InvalidURL as exc:
        print(f"browser-stack: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except client.Unreachable as exc:
        print(f"browser-stack: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE


def _ensure(args: argparse.Namespace) -> int:
    needs = [name for names in args.needs for name in names] if args.needs else None
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
    from browser_stack import memory

    if args.diff:
        if len(args.diff) != 3 or args.diff[0] != "diff":
            print("browser-stack: usage: browser-stack memory diff A.json B.json", file=sys.stderr)
            return EXIT_USAGE
        samples = []
        for path in args.diff[1:]:
            try:
                with open(path, encoding="utf-8") as f:
                    samples.append(memory.check_sample(json.load(f)))
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


def serve(env: dict[str, str]) -> int:
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        print(f"browser-stack: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    # Here, not at the top: the client commands never load aiohttp.
    from browser_stack import server

    try:
        server.run(settings)
    except StartupError as exc:
        print(f"browser-stack: cannot start: {exc.message}", file=sys.stderr)
        return EXIT_STARTUP
    return EXIT_OK
