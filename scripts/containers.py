"""podman for the project's container tests and benches, with the project's containers.conf.

Shared by tests/container/ and bench/fleet.py (`--engine podman`):

    python scripts/containers.py check     # can this machine run a container? (exit 0/1)
    python scripts/containers.py sweep     # remove what a killed run left (by label)

Everything it creates carries the label browser-stack-test=1 and a name starting
with bstest-, so that a sweep finds it and nothing else. The images are built by
the project's own scripts (tests/container/aio-standin/build.sh and
scripts/build-image.sh), with their layer caches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "scripts" / "containers.conf"
STANDIN_BUILD = REPO / "tests" / "container" / "aio-standin" / "build.sh"
BUILD_IMAGE = REPO / "scripts" / "build-image.sh"
LABEL = "browser-stack-test=1"
PREFIX = "bstest-"
STANDIN_TAG = "localhost/bstest-aio-standin:latest"
PROBE_TAG = "localhost/bstest-probe:latest"
GATEWAY_PORT = 8080


class EngineError(RuntimeError):
    pass


def engine_env() -> dict[str, str]:
    """This process's environment with podman pointed at the project's containers.conf
    (runc, the limits this machine kind allows), as scripts/container-engine.sh does."""
    conf = os.environ.get("CONTAINERS_CONF") or str(CONTAINERS_CONF)
    return {**os.environ, "CONTAINERS_CONF": conf}


def podman(
    *args: str, check: bool = True, timeout: float = 120, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """One podman command; its error output in the exception when it fails."""
    done = subprocess.run(
        ["podman", *args],
        env=engine_env(),
        input=None if input is None else input.decode(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and done.returncode != 0:
        raise EngineError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr.strip()}")
    return done


def podman_json(*args: str) -> Any:
    """A podman command's JSON output (inspect and the like)."""
    return json.loads(podman(*args).stdout)


def unique(what: str) -> str:
    return f"{PREFIX}{what}-{uuid.uuid4().hex[:8]}"


def _true() -> str:
    return shutil.which("true") or "/bin/true"


def _probe_image() -> None:
    """A one-file image: the host's `true` and the libraries it loads (no registry)."""
    true = _true()
    ldd = subprocess.run(["ldd", true], capture_output=True, text=True, check=False, timeout=30)
    libs = [w for w in ldd.stdout.split() if w.startswith("/")]
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "probe.tar"
        with tarfile.open(tar, "w") as out:
            for path in [true, *libs]:
                out.add(os.path.realpath(path), arcname=path.lstrip("/"))
        podman("import", "--quiet", str(tar), PROBE_TAG)


def unusable() -> str | None:
    """Why no container can run here (one line), or None when one can: a container of
    the host's `true` is run for real."""
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/install-deps.sh --dev installs it)"
    try:
        if podman("image", "exists", PROBE_TAG, check=False).returncode != 0:
            _probe_image()
        podman("run", "--rm", "--label", LABEL, "--network", "none", PROBE_TAG, _true())
    except (EngineError, OSError, subprocess.TimeoutExpired) as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return f"podman cannot run a container here: {lines[-1] if lines else exc}"
    return None


def sweep() -> list[str]:
    """Remove every pod, container and volume labelled as the project's tests'."""
    removed: list[str] = []
    pods = podman("pod", "ps", "-q", "--filter", f"label={LABEL}", check=False).stdout.split()
    for pod in pods:
        podman("pod", "rm", "-f", "-t", "0", pod, check=False)
    removed += pods
    ids = podman("ps", "-aq", "--filter", f"label={LABEL}", check=False).stdout.split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids, check=False)
    removed += ids
    volumes = podman("volume", "ls", "-q", "--filter", f"label={LABEL}", check=False)
    for volume in volumes.stdout.split():
        podman("volume", "rm", "-f", volume, check=False)
        removed.append(volume)
    return removed


def build_standin(tag: str = STANDIN_TAG) -> str:
    """The AIO stand-in, built or taken from the cache (tests/container/aio-standin/)."""
    _run_script([str(STANDIN_BUILD), "--tag", tag], timeout=1200)
    return tag


def build_image(
    base: str, tag: str, *, lazy: bool = False, extra: Sequence[str] = ()
) -> tuple[str, float]:
    """scripts/build-image.sh on `base`; returns the tag and how long it took (s)."""
    argv = [str(BUILD_IMAGE), "--base", base, "--tag", tag]
    if lazy:
        argv.append("--lazy")
    if extra:
        argv += ["--", *extra]
    began = time.monotonic()
    out = _run_script(argv, timeout=900)
    assert out.splitlines()[-1] == tag, out
    return tag, time.monotonic() - began


def _run_script(argv: list[str], timeout: float) -> str:
    done = subprocess.run(
        argv, env=engine_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise EngineError(f"{' '.join(argv)}: exit {done.returncode}\n{done.stderr[-4000:]}")
    return done.stdout


@dataclass
class Container:
    """One running container of the image, its gateway published on 127.0.0.1."""

    name: str
    port: int
    image: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exec(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        return podman("exec", self.name, *argv, check=check, timeout=timeout).stdout

    def inspect(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = podman_json("inspect", self.name)
        return out[0]

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def processes(self) -> list[str]:
        """The command names of the processes running in the container."""
        done = podman("top", self.name, "comm", check=False)
        return [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]


def start(
    image: str,
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    volumes: Sequence[str] = (),
    memory: str | None = None,
    name: str | None = None,
) -> Container:
    """`podman run -d` with the gateway on 127.0.0.1:port; labelled for sweep()."""
    name = name or unique("sandbox")
    argv = ["run", "-d", "--name", name, "--label", LABEL, "-p", f"127.0.0.1:{port}:{GATEWAY_PORT}"]
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    for volume in volumes:
        argv += ["-v", volume]
    if memory:
        argv += ["--memory", memory]
    podman(*argv, image)
    return Container(name=name, port=port, image=image, env=dict(env or {}))


def remove(name: str) -> None:
    podman("rm", "-f", "-t", "0", name, check=False)


@contextlib.contextmanager
def running(image: str, port: int, **kwargs: Any) -> Iterator[Container]:
    """A container removed on every exit, its output printed when the body failed."""
    container = start(image, port, **kwargs)
    try:
        yield container
    except BaseException:
        print(f"--- {container.name} output ---\n{container.logs()[-6000:]}", file=sys.stderr)
        raise
    finally:
        remove(container.name)


def stop(name: str, timeout_s: int = 10) -> tuple[int, float]:
    """`podman stop` with its grace period; returns (the container's exit code, seconds)."""
    began = time.monotonic()
    podman("stop", "-t", str(timeout_s), name, timeout=timeout_s + 60)
    seconds = time.monotonic() - began
    code = int(podman("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip())
    return code, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("check", "sweep"))
    args = parser.parse_args(argv)
    if args.command == "check":
        reason = unusable()
        print(reason or "podman runs containers here")
        return 1 if reason else 0
    for item in sweep():
        print(f"removed {item}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
