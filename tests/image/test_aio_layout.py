"""The image's boot path without Docker: entrypoint --aio -> run.sh -> supervisord.

A temp directory is laid out like the AIO image: opt/gem/run.sh (a stand-in that
does what the real one is known to do: turn DISABLE_X into AUTOSTART_X, export
SUPERVISOR_SERVER_URL and exec `supervisord -n` on a config that includes
opt/gem/supervisord/*.conf), the image's five programs with the command lines
the sidecar expects, run by `sleep` stand-ins of their executables (usr/bin),
whose autostart reads those AUTOSTART_* variables, and the files the Dockerfile
copies (the sidecar's supervisord.d/browser-stack.conf). The Dockerfile's RUN
steps, ENTRYPOINT and HEALTHCHECK are then run as written (paths mapped into the
temp directory, the venv to this one).

Which AUTOSTART_* variable each image program reads is a guess (the image's
program files are not public); the names of the five are the ones the sidecar
manages.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..helpers import free_port, program_states
from .aio_boot import IMAGE_PROGRAMS, RUN_SH, SUPERVISORD_CONF
from .dockerfile import Dockerfile

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SUPERVISORD = VENV_BIN / "supervisord"
# The image's venv, which the Dockerfile's steps name, is this one here.
IMAGE_VENV = "/opt/browser-stack/venv"

STANDIN = "#!/bin/sh\nexec sleep 600\n"


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
            f"[program:{name}]\ncommand={command.format(root=root)}\nautostart=%(ENV_{var})s\n"
            f"startsecs=0\nstopasgroup=true\nkillasgroup=true\n{more}\n"
            for name, (var, command, more) in IMAGE_PROGRAMS.items()
        )
    )
    (root / "usr" / "bin").mkdir(parents=True)
    for executable in ("Xvnc", "openbox", "chromium", "mcp-server-browser", "websocat"):
        (root / "usr" / "bin" / executable).write_text(STANDIN)
        (root / "usr" / "bin" / executable).chmod(0o755)
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


def image_path(image: Image) -> str:
    """PATH in the image: its /usr/local/bin and /usr/bin, then this venv (for
    supervisord, which the real image has in its own place) and the host's."""
    own = [image.path("/usr/local/bin"), image.path("/usr/bin"), VENV_BIN]
    return os.pathsep.join([*map(str, own), os.environ.get("PATH", "/usr/bin:/bin")])


def mapped(image: Image, command: str) -> str:
    """The image's absolute paths in a shell command, mapped into the temp image."""

    def one(match: re.Match[str]) -> str:
        path = match[0]
        if path.startswith(IMAGE_VENV):
            return str(VENV_BIN.parent) + path.removeprefix(IMAGE_VENV)
        return str(image.path(path))

    return re.sub(r"(?<![\w.$/-])/(?:opt|usr|var|etc)/[^\s;'\"]*", one, command)


def run_steps(image: Image, **build_args: str) -> list[subprocess.CompletedProcess[str]]:
    """The final stage's RUN steps in order, as `docker build` runs them: with the
    ARG and ENV values in effect at each, stopping at the first that fails."""
    env = {"PATH": image_path(image), "HOME": str(image.root)}
    done: list[subprocess.CompletedProcess[str]] = []
    for step in image.dockerfile.instructions:
        if step.stage != image.dockerfile.last_stage:
            continue
        name, _, value = step.args.partition("=")
        value = re.sub(r"\$\{(\w+)\}", lambda m: env.get(m[1], ""), value)
        if step.keyword == "ARG":
            env[name] = build_args.get(name, value)
        elif step.keyword == "ENV":
            env[name] = str(image.path(value)) if value.startswith("/") else value
        elif step.keyword == "RUN":
            done.append(
                subprocess.run(
                    ["sh", "-c", mapped(image, step.args)],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            )
            if done[-1].returncode != 0:
                break
    return done


def rows(table: str) -> dict[str, tuple[str, str]]:
    """The doctor's table: check -> (verdict, the rest of its line)."""
    out = {}
    for line in table.splitlines()[1:-1]:
        if not line.startswith(" "):
            name, verdict, saw = line.split(None, 2)
            out[name] = (verdict, saw)
    return out


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
        return program_states(self.status())

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
        "PATH": image_path(image),
        "HOME": str(image.root),
        "SUPERVISORD": str(SUPERVISORD),
        "BROWSER_STACK_LISTEN": listen,
        MARK: str(image.root),
    }
    for name, value in image.dockerfile.image_env().items():
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


def doctor_route(booted: Booted) -> dict[str, str]:
    """The live doctor through the sidecar's route: check -> verdict."""
    with urllib.request.urlopen(booted.base_url + "/v1/browser-stack/doctor", timeout=30) as r:
        report = json.loads(r.read())
    return {c["check"]: c["verdict"] for c in report["checks"]}


# What the live doctor says about the image's files whatever else runs on this
# machine (stack-ports, x-lock and cgroup-memory are about the machine).
CONFIG_CHECKS = (
    "programs",
    "sidecar-program",
    "autostart",
    "browser-stop",
    "browser-stop-signal",
    "tigervnc-command",
    "browser-command",
    "mcp-command",
    "websocat-command",
    "x-clients-display",
    "executables",
    "wait-ports",
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
        verdicts = doctor_route(booted)
        assert {n: verdicts[n] for n in CONFIG_CHECKS} == dict.fromkeys(CONFIG_CHECKS, "ok")
        time.sleep(0.2)
        assert booted.states() == dict.fromkeys(IMAGE_PROGRAMS, "STOPPED")
        assert (image.path("/var/log/browser-stack") / "browser-stack.err.log").exists()


@pytest.mark.parametrize("switch", ["LAZY_START_BROWSER_STACK", None], ids=["lazy", "eager"])
def test_a_deployments_own_off_switch_stays_in_force(image: Image, switch: str | None) -> None:
    """DISABLE_MCP_BROWSER=true set by the deployment: run.sh keeps the program
    stopped at boot in either mode, and the sidecar (through the entrypoint) knows
    it for good: disabled in status, the mcp gate refused with 409."""
    given = {"DISABLE_MCP_BROWSER": "true", **({switch: "true"} if switch else {})}
    with boot(image, **given) as booted:
        assert booted.run_env()["BROWSER_STACK_DEPLOYMENT_DISABLED"] == "DISABLE_MCP_BROWSER"
        status = booted.status()
        assert status["mode"]["lazy"] is (switch is not None)
        assert status["disabled"] == {"mcp-server-browser": "DISABLE_MCP_BROWSER"}
        mcp = status["programs"]["mcp-server-browser"]
        assert (mcp["state"], mcp["readiness"]) == ("STOPPED", "disabled")
        request = urllib.request.Request(booted.base_url + "/v1/browser-stack/gate/mcp")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 409
        error = json.loads(refused.value.read())
        assert (error["error"], error["variables"]) == (
            "disabled_by_deployment",
            ["DISABLE_MCP_BROWSER"],
        )
        assert booted.states()["mcp-server-browser"] == "STOPPED"


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
        verdicts = doctor_route(booted)
        assert {n: verdicts[n] for n in CONFIG_CHECKS} == dict.fromkeys(CONFIG_CHECKS, "ok")


def test_the_dockerfiles_doctor_step_passes_on_the_image(image: Image) -> None:
    steps = run_steps(image)
    assert [s.returncode for s in steps] == [0] * len(steps), [s.stderr for s in steps]
    [doctor] = [s for s in steps if "browser-stack doctor --static" in " ".join(s.args)]
    checks = rows(doctor.stdout)
    assert doctor.stdout.splitlines()[-1].endswith(" 0 fail"), doctor.stdout
    assert checks["supervisord"][0] == "ok"
    assert checks["autostart"] == (
        "ok",
        "lazy (LAZY_START_BROWSER_STACK=true): autostart=false for all five",
    )
    # `browser-stack` through the link the Dockerfile makes in /usr/local/bin
    assert f"browser-stack {image.path('/usr/local/bin/browser-stack')}" in checks["executables"][1]
    # the gateway route is in the image and no token is set: a warning, not a failure
    assert checks["sidecar-exposure"][0] == "warn"


def edit_programs(image: Image, old: str, new: str) -> None:
    programs = image.gem / "supervisord" / "image-programs.conf"
    text = programs.read_text()
    assert old in text
    programs.write_text(text.replace(old, new))


def test_the_doctor_step_fails_the_build_on_a_renamed_program(image: Image) -> None:
    edit_programs(image, "[program:browser]", "[program:chrome]")
    steps = run_steps(image)
    assert steps[-1].returncode == 1
    failed = [n for n, (verdict, _) in rows(steps[-1].stdout).items() if verdict == "fail"]
    assert failed == ["programs"]
    assert "rename [program:chrome] to [program:browser]" in steps[-1].stdout


def test_the_doctor_step_fails_the_build_when_autostart_ignores_the_switch(image: Image) -> None:
    edit_programs(image, "autostart=%(ENV_AUTOSTART_BROWSER)s", "autostart=true")
    steps = run_steps(image)
    assert steps[-1].returncode == 1
    failed = [n for n, (verdict, _) in rows(steps[-1].stdout).items() if verdict == "fail"]
    assert failed == ["autostart"]


def test_a_build_arg_turns_the_doctor_off(image: Image) -> None:
    """For a base whose layout is known to differ."""
    edit_programs(image, "[program:browser]", "[program:chrome]")
    steps = run_steps(image, BROWSER_STACK_DOCTOR="off")
    assert [s.returncode for s in steps] == [0] * len(steps)
    assert "browser-stack doctor --static" in " ".join(steps[-1].args)
    assert steps[-1].stdout == ""
