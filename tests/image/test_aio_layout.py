"""The image's boot path without Docker: entrypoint --aio -> run.sh -> supervisord.

A temp directory is laid out like the AIO image: opt/gem/run.sh (a stand-in that
does what the real one is known to do: turn DISABLE_X into AUTOSTART_X, export
SUPERVISOR_SERVER_URL and exec `supervisord -n` on a config that includes
opt/gem/supervisord/*.conf), the image's five programs as `sleep` stand-ins whose
autostart reads those AUTOSTART_* variables, and the files the Dockerfile copies
(the sidecar's supervisord.d/browser-stack.conf). The Dockerfile's ENTRYPOINT and
HEALTHCHECK are then run as written (paths mapped into the temp directory).

Which AUTOSTART_* variable each image program reads is a guess (the image's
program files are not public); the names of the five are the ones the sidecar
manages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from .gateway import free_port
from .test_dockerfile import Dockerfile

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SUPERVISORD = VENV_BIN / "supervisord"

RUN_SH = """#!/bin/sh
# Stand-in for the AIO image's /opt/gem/run.sh.
set -eu
gem=$(cd "$(dirname "$0")" && pwd)
env -0 > "$gem/run.env"
autostart() {
    case $(printf '%s' "${1-}" | tr '[:upper:]' '[:lower:]') in
        true | 1 | yes) echo false ;;
        *) echo true ;;
    esac
}
AUTOSTART_BROWSER=$(autostart "${DISABLE_BROWSER-}")
AUTOSTART_MCP_BROWSER=$(autostart "${DISABLE_MCP_BROWSER-}")
AUTOSTART_VNC=$(autostart "${DISABLE_VNC-}")
SUPERVISOR_SERVER_URL="unix://$gem/supervisor.sock"
export AUTOSTART_BROWSER AUTOSTART_MCP_BROWSER AUTOSTART_VNC SUPERVISOR_SERVER_URL
exec "$SUPERVISORD" -n -c "$gem/supervisord.conf"
"""

SUPERVISORD_CONF = """[unix_http_server]
file={gem}/supervisor.sock
[supervisord]
nodaemon=true
logfile={gem}/supervisord.log
pidfile={gem}/supervisord.pid
childlogdir={gem}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[include]
files = {gem}/supervisord/*.conf
"""

# The image's own five, as stand-ins.
IMAGE_PROGRAMS = {
    "tigervnc": "AUTOSTART_VNC",
    "openbox": "AUTOSTART_VNC",
    "browser": "AUTOSTART_BROWSER",
    "mcp-server-browser": "AUTOSTART_MCP_BROWSER",
    "websocat": "AUTOSTART_VNC",
}


@dataclass
class Image:
    root: Path
    gem: Path
    dockerfile: Dockerfile

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")


@pytest.fixture
def image(tmp_path: Path) -> Image:
    if not SUPERVISORD.exists():
        pytest.fail(f"{SUPERVISORD} is missing (pip install supervisor)", pytrace=False)
    root = tmp_path
    dockerfile = Dockerfile.parse()
    gem = root / "opt" / "gem"
    (gem / "supervisord").mkdir(parents=True)
    (gem / "run.sh").write_text(RUN_SH)
    (gem / "run.sh").chmod(0o755)
    (gem / "supervisord.conf").write_text(SUPERVISORD_CONF.format(gem=gem))
    (gem / "supervisord" / "image-programs.conf").write_text(
        "".join(
            f"[program:{name}]\ncommand=sleep 600\nautostart=%(ENV_{var})s\n"
            f"startsecs=0\nstopasgroup=true\nkillasgroup=true\n\n"
            for name, var in IMAGE_PROGRAMS.items()
        )
    )
    # what the final stage copies from the repo, at its place in the image
    for sources, dest in dockerfile.copies(stage=-1):
        for src in sources:
            target = root / dest.lstrip("/")
            if dest.endswith("/"):
                target = target / Path(src).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / src, target)
    return Image(root, gem, dockerfile)


MARK = "BROWSER_STACK_AIO_LAYOUT_TEST"


@dataclass
class Booted:
    image: Image
    proc: subprocess.Popen[bytes]
    base_url: str
    env: dict[str, str]

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.base_url + "/v1/browser-stack/status", timeout=10) as r:
            out: dict[str, Any] = json.loads(r.read())
            return out

    def states(self) -> dict[str, str]:
        return {name: p["state"] for name, p in self.status()["programs"].items()}

    def run_env(self) -> dict[str, str]:
        raw = (self.image.gem / "run.env").read_text()
        return dict(item.split("=", 1) for item in raw.split("\0") if item)


def leftovers(root: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARK) == str(root) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


@contextlib.contextmanager
def boot(image: Image, **switches: str) -> Iterator[Booted]:
    """Run the Dockerfile's ENTRYPOINT as written, absolute paths mapped into the
    temp image, with the container's environment (ENV lines, then `switches`)."""
    argv = [
        str(image.path(a)) if a.startswith("/") and image.path(a).exists() else a
        for a in image.dockerfile.exec_form("ENTRYPOINT")
    ]
    listen = f"127.0.0.1:{free_port()}"
    env = {
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(image.root),
        "SUPERVISORD": str(SUPERVISORD),
        "BROWSER_STACK_LISTEN": listen,
        MARK: str(image.root),
    }
    for instruction in image.dockerfile.of("ENV", -1):
        name, _, value = instruction.args.partition("=")
        env[name] = str(image.path(value)) if value.startswith("/") else value
    env.update(switches)
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    booted = Booted(image, proc, f"http://{listen}", env)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (image.gem / "supervisord.log").read_text()
            try:
                with urllib.request.urlopen(booted.base_url + "/healthz", timeout=2) as r:
                    if json.loads(r.read())["supervisor"]["reachable"]:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the sidecar did not come up under supervisord"
            time.sleep(0.05)
        yield booted
    finally:
        if proc.poll() is None:
            # Stop the programs first: on supervisord's own shutdown the sidecar takes
            # ~5 s to go (a stop over XML-RPC, ~0.1 s), which would dominate this test.
            subprocess.run(
                [
                    str(VENV_BIN / "supervisorctl"),
                    "-s",
                    f"unix://{image.gem}/supervisor.sock",
                    "stop",
                    "all",
                ],
                capture_output=True,
                timeout=60,
                check=False,
            )
            proc.send_signal(signal.SIGTERM)  # supervisord, which the entrypoint exec'd
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        left = leftovers(image.root)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        assert not left, f"outlived supervisord: {left}"


def healthcheck(booted: Booted) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK as written, the venv's python mapped to this one."""
    argv = booted.image.dockerfile.exec_form("HEALTHCHECK")
    assert argv[0].endswith("/venv/bin/python")
    env = {k: v for k, v in booted.env.items() if k != MARK}
    return subprocess.run(
        [sys.executable, *argv[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_lazy_boot_starts_the_sidecar_and_none_of_the_five(image: Image) -> None:
    with boot(image, DISABLE_BROWSER_STACK="true", WAIT_PORTS="8079,9222,8091") as booted:
        run_env = booted.run_env()
        assert [run_env[k] for k in ("DISABLE_BROWSER", "DISABLE_MCP_BROWSER", "DISABLE_VNC")] == [
            "true"
        ] * 3
        assert run_env["WAIT_PORTS"] == "8079,8091"
        assert booted.states() == dict.fromkeys(IMAGE_PROGRAMS, "STOPPED")
        done = healthcheck(booted)
        assert done.returncode == 0, done.stderr
        time.sleep(0.2)
        assert booted.states() == dict.fromkeys(IMAGE_PROGRAMS, "STOPPED")
        assert (image.path("/var/log/browser-stack") / "browser-stack.err.log").exists()


def test_without_the_switch_the_image_starts_the_five_as_before(image: Image) -> None:
    with boot(image, WAIT_PORTS="8079,9222,8091") as booted:
        run_env = booted.run_env()
        assert not {"DISABLE_BROWSER", "DISABLE_MCP_BROWSER", "DISABLE_VNC"} & set(run_env)
        assert run_env["WAIT_PORTS"] == "8079,9222,8091"
        deadline = time.monotonic() + 10
        while set(booted.states().values()) != {"RUNNING"}:
            assert time.monotonic() < deadline, booted.states()
            time.sleep(0.05)
        assert healthcheck(booted).returncode == 0
