"""Which supervisord stop keeps Chromium's cookies, and which leaves processes behind.

The doctor's rules for the browser program (browser_stack/doctor/checks.py,
leaves_no_child and keeps_cookies) rest on what this prints. A private
supervisord runs Xvnc and one browser program per stop setting, each Chromium
with a fresh profile and killasgroup=true: stopsignal INT, TERM or HUP with
stopasgroup true or false; QUIT and KILL, which Chromium does not handle, to the
browser alone; and INT or TERM through a shell wrapper that does not exec
Chromium (`sh -c 'chromium ...; exit $?'`). For each setting and round:

  1. start the program over XML-RPC, wait for CDP, set a cookie on a local page
     with Playwright, disconnect, wait 2 s;
  2. stopProcess(wait=True), wait 1 s, then count (and kill) the processes still
     running with that profile in their command line;
  3. start it again and read the cookie back.

Prints, per setting, how many rounds kept the cookie and how many processes
outlived the stop. Not a test: nothing is asserted.

    .venv/bin/python -m bench.stop_signals [--rounds 3] [--display :55] [--only INT:alone:sh]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import xmlrpc.client
from pathlib import Path

import psutil

from scripts.local_stack import rpc
from tests.helpers import free_port, free_ports, page_server

# (stopsignal, stopasgroup, through a shell that does not exec Chromium)
SETTINGS = [
    ("INT", False, False),
    ("INT", True, False),
    ("TERM", False, False),
    ("TERM", True, False),
    ("HUP", False, False),
    ("HUP", True, False),
    # Signals Chromium does not handle: to the browser alone, does a child survive?
    ("QUIT", False, False),
    ("KILL", False, False),
    # A wrapper script that runs Chromium as its child: the signal reaches the shell.
    ("INT", False, True),
    ("INT", True, True),
    ("TERM", False, True),
]
CHROMIUM_FLAGS = (
    "--no-sandbox --remote-debugging-address=127.0.0.1 --no-first-run "
    "--no-default-browser-check --disable-background-networking --disable-component-update "
    "--disable-sync --disable-quic --disable-dev-shm-usage --disable-gpu"
)


def name_of(signal: str, group: bool, wrapper: bool) -> str:
    return f"browser-{signal.lower()}-{'group' if group else 'alone'}{'-sh' if wrapper else ''}"


def write_config(
    root: Path, display: str, settings: list[tuple[str, bool, bool]], ports: dict[str, int]
) -> Path:
    parts = [
        f"""[unix_http_server]
file={root}/supervisor.sock
[supervisord]
nodaemon=true
logfile={root}/supervisord.log
pidfile={root}/supervisord.pid
childlogdir={root}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:tigervnc]
command=Xvnc {display} -rfbport {free_port()} -SecurityTypes None -localhost -nolisten tcp
autostart=true
startsecs=1
"""
    ]
    for signal, group, wrapper in settings:
        name = name_of(signal, group, wrapper)
        chromium = (
            f"chromium {CHROMIUM_FLAGS} --remote-debugging-port={ports[name]} "
            f"--user-data-dir={root}/{name} about:blank"
        )
        # `; exit $?` keeps the shell from exec'ing its last command.
        command = f"sh -c '{chromium}; exit $?'" if wrapper else chromium
        parts.append(
            f"""[program:{name}]
command={command}
environment=DISPLAY="{display}"
autostart=false
autorestart=false
startsecs=1
stopsignal={signal}
stopwaitsecs=15
stopasgroup={str(group).lower()}
killasgroup=true
"""
        )
    conf = root / "supervisord.conf"
    conf.write_text("".join(parts))
    return conf


def wait_cdp(port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/version", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


async def cookie(port: int, origin: str, write: bool) -> str:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
        page = await browser.contexts[0].new_page()
        await page.goto(origin)
        if write:
            await page.evaluate('() => { document.cookie = "kept=1; max-age=86400; path=/"; }')
        value = str(await page.evaluate("() => document.cookie"))
        await page.close()
        await browser.close()
        return value


def left_over(profile: Path) -> int:
    count = 0
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(str(profile) in word for word in process.cmdline()):
                count += 1
                process.kill()
    return count


def trial(root: Path, name: str, port: int, origin: str) -> tuple[bool, int]:
    profile = root / name
    shutil.rmtree(profile, ignore_errors=True)
    rpc(root, "startProcess", name, True)
    wait_cdp(port)
    asyncio.run(cookie(port, origin, write=True))
    time.sleep(2)
    rpc(root, "stopProcess", name, True)
    time.sleep(1)  # crashpad's handler ends just after the browser
    left = left_over(profile)
    rpc(root, "startProcess", name, True)
    wait_cdp(port)
    kept = "kept=1" in asyncio.run(cookie(port, origin, write=False))
    rpc(root, "stopProcess", name, True)
    left_over(profile)
    return kept, left


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--display", default=":55")
    ap.add_argument(
        "--only", default="", help="comma-separated SIGNAL:alone|group[:sh], e.g. INT:alone:sh"
    )
    args = ap.parse_args(argv)
    settings = SETTINGS
    if args.only:
        wanted = set(args.only.split(","))
        settings = [
            (s, g, w)
            for s, g, w in SETTINGS
            if f"{s}:{'group' if g else 'alone'}{':sh' if w else ''}" in wanted
        ]
    root = Path(tempfile.mkdtemp(prefix="stop-signals-"))
    ports = dict(zip((name_of(*s) for s in settings), free_ports(len(settings)), strict=True))
    conf = write_config(root, args.display, settings, ports)
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    results: dict[str, list[tuple[bool, int]]] = {name: [] for name in ports}
    try:
        with page_server("<html><body>cookie test</body></html>") as origin:
            deadline = time.monotonic() + 20
            while True:
                with contextlib.suppress(OSError, xmlrpc.client.Error):
                    info = rpc(root, "getProcessInfo", "tigervnc")
                    if info["statename"] == "RUNNING":
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError((root / "supervisord.log").read_text())
                time.sleep(0.1)
            for _ in range(args.rounds):  # interleaved: each setting once per round
                for name, port in ports.items():
                    results[name].append(trial(root, name, port, origin))
    finally:
        supervisord.terminate()
        supervisord.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)
    print(f"Chromium under supervisord, {args.rounds} rounds; killasgroup=true everywhere\n")
    print("| command | stopsignal | stopasgroup | cookie kept | processes left after the stop |")
    print("|---|---|---|--:|--:|")
    for signal, group, wrapper in settings:
        rounds = results[name_of(signal, group, wrapper)]
        kept = sum(k for k, _ in rounds)
        left = sum(n for _, n in rounds)
        how = "sh -c 'chromium ...; exit $?'" if wrapper else "chromium ..."
        print(f"| {how} | {signal} | {str(group).lower()} | {kept}/{len(rounds)} | {left} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
