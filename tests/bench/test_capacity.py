"""bench/capacity.py against bench/README.md: the capacity tables in the README are
what the script computes from the README's own measured figures (not typed by hand),
and the formula behaves as it says."""

from __future__ import annotations

import pytest

from bench import capacity

from ..helpers import REPO


@pytest.mark.parametrize("name", ["bench/README.md", "README.md", "docs/aio-image.md"])
def test_the_docs_hold_what_the_script_computes(name: str) -> None:
    want = capacity.updated()[name]
    assert (REPO / name).read_text(encoding="utf-8") == want, (
        "run: .venv/bin/python -m bench.capacity --write"
    )


def test_the_formula() -> None:
    measured = capacity.Inputs(lazy_mib=50.0, eager_mib=250.0, sidecar_mib=30.0)
    assert measured.stack_mib == 200.0
    stand_in, aio = capacity.pods(measured)
    # all asleep, a quarter awake, all awake: lazy at 100% holds what eager holds
    assert [stand_in.lazy_mib(p) for p in capacity.AWAKE] == [50.0, 100.0, 250.0]
    assert capacity.per_node(16, stand_in.eager_mib) == 65  # floor(16384 / 250)
    assert capacity.per_node(16, stand_in.lazy_mib(0.0)) == 327
    # an AIO pod: issue 198's baseline, the sidecar on top when lazy
    assert (aio.eager_mib, aio.asleep_mib, aio.awake_mib) == (413.0, 208.0, 443.0)
