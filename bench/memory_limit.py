"""What a lazy container's first browser start does under a memory limit.

One lazy container of the image per limit (podman --memory, the project's
containers.conf), an ensure for CDP through its gateway, then one for every gate;
prints each answer, the readiness of the five, the cgroup's peak usage and how
many processes the kernel's OOM killer ended in it. Not a test: nothing asserted.

    .venv/bin/python -m bench.memory_limit --image localhost/bstest-browser-stack:eager 160m 300m
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scripts import containers
from tests.helpers import free_port, request, wait_for

REPO = Path(__file__).resolve().parent.parent

API = "/browser-stack/v1/browser-stack"


def cgroup(container: object, name: str) -> str:
    text: str = container.exec("cat", f"/sys/fs/cgroup/memory/{name}")  # type: ignore[attr-defined]
    return text.strip()


def run(image: str, limit: str) -> None:
    env = {"LAZY_START_BROWSER_STACK": "true"}
    with containers.running(image, free_port(), env=env, memory=limit) as c:

        def serving() -> bool:
            try:
                return request(c.url, "GET", "/browser-stack/readyz", timeout=5).status == 200
            except OSError:
                return False

        wait_for(serving, 120, "the sidecar", 0.5)
        for body in ({"needs": ["cdp"], "timeout_s": 60}, {"timeout_s": 60}):
            began = time.monotonic()
            answer = request(c.url, "POST", f"{API}/ensure", body, timeout=90)
            seconds = time.monotonic() - began
            what = answer.body if answer.status >= 400 else {"ready": answer.body["ready"]}
            print(f"--memory {limit}: ensure {body}: {answer.status} in {seconds:.2f} s")
            print(f"  {json.dumps(what)[:300]}")
        status = request(c.url, "GET", f"{API}/status").body
        print("  readiness:", {n: p["readiness"] for n, p in status["programs"].items()})
        peak = int(cgroup(c, "memory.max_usage_in_bytes")) / 2**20
        kills = [ln for ln in cgroup(c, "memory.oom_control").splitlines() if "oom_kill " in ln]
        print(f"  peak usage {peak:.1f} MiB; {kills[0] if kills else 'oom_kill not shown'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="localhost/bstest-browser-stack:eager")
    parser.add_argument("limits", nargs="+", help="podman --memory values, e.g. 160m")
    args = parser.parse_args(argv)
    reason = containers.unusable()
    if reason is not None:
        print(f"memory_limit.py: {reason}", file=sys.stderr)
        return 1
    for limit in args.limits:
        run(args.image, limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
