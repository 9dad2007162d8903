"""bin/browser-stack-entrypoint run for real with `env -0` as the command it execs,
and what it exported read back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ENTRYPOINT = Path(__file__).resolve().parents[2] / "bin" / "browser-stack-entrypoint"


def run(
    tmp_path: Path, args: list[str] | None = None, **env: str | None
) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint with a clean environment: PATH, scratch dirs, then env
    (None removes a variable)."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BROWSER_STACK_PROFILE_DIR": str(tmp_path / "profile"),
        "BROWSER_STACK_LOG_DIR": str(tmp_path / "log"),
    }
    base.update({k: v for k, v in env.items() if v is not None})
    for k, v in env.items():
        if v is None:
            base.pop(k, None)
    return subprocess.run(
        [str(ENTRYPOINT), *(["env", "-0"] if args is None else args)],
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def exported(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    pairs = (item.split("=", 1) for item in result.stdout.split("\0") if item)
    return {k: v for k, v in pairs}
