from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser_stack.schedstat import run_queue_wait_s


def test_reads_the_run_queue_wait_of_the_main_thread(tmp_path: Path) -> None:
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "schedstat").write_text("596859192 7627340782 420\n")
    assert run_queue_wait_s(42, tmp_path) == pytest.approx(7.627340782)


def test_this_process_has_a_figure_on_linux() -> None:
    wait = run_queue_wait_s(os.getpid())
    assert wait is not None and wait >= 0


@pytest.mark.parametrize("content", [None, "", "12\n", "a b c\n"])
def test_unknown_when_the_kernel_does_not_say(tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "42").mkdir()
        (tmp_path / "42" / "schedstat").write_text(content)
    assert run_queue_wait_s(42, tmp_path) is None
    assert run_queue_wait_s(0, tmp_path) is None
