"""One sidecar controls a supervisord's stack: the claim, on real abstract sockets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from browser_stack.claim import Claim, claim_name
from browser_stack.errors import NotInControl
from browser_stack.stack import GATES, PROGRAMS

from .fakes import FakeSupervisor, make_controller


def test_the_name_follows_supervisords_socket_wherever_it_is_reached_from(
    tmp_path: Path,
) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to(tmp_path / "run")  # /var/run -> /run
    direct = claim_name(f"unix://{tmp_path}/run/supervisor.sock")
    assert claim_name(f"unix://{tmp_path}/var/run/supervisor.sock") == direct
    assert claim_name(f"unix://{tmp_path}/run/other.sock") != direct
    assert claim_name("http://Supervisor:9001") == claim_name("http://supervisor:9001")
    long = claim_name(f"unix://{tmp_path}/{'d' * 120}/supervisor.sock")
    assert len(long.encode()) <= 100
    assert long != claim_name(f"unix://{tmp_path}/{'e' * 120}/supervisor.sock")


async def test_the_second_claim_is_refused_names_the_first_and_takes_over_when_it_goes(
    tmp_path: Path,
) -> None:
    url = f"unix://{tmp_path}/supervisor.sock"
    first = Claim(url, "127.0.0.1:8110")
    second = Claim(url, "127.0.0.1:8111")
    try:
        assert first.held()
        assert not second.held()
        assert await second.holder() == (os.getpid(), "127.0.0.1:8110")
        with pytest.raises(NotInControl) as caught:
            await second.check()
        assert caught.value.status == 409
        assert caught.value.fields["holder_listen"] == "127.0.0.1:8110"
        assert caught.value.fields["holder_pid"] == os.getpid()
        assert "ask that one" in caught.value.message
        await first.check()  # the holder may act
        other = Claim(f"unix://{tmp_path}/another.sock", "x")  # another supervisord's
        assert other.held()
        other.close()
        first.close()
        assert second.held()
        await second.check()
        assert not first.held()
    finally:
        first.close()
        second.close()


async def test_a_controller_that_does_not_control_the_stack_acts_on_nothing(
    tmp_path: Path,
) -> None:
    url = f"unix://{tmp_path}/supervisor.sock"
    holder = Claim(url, "127.0.0.1:8110")
    assert holder.held()
    mine = Claim(url, "127.0.0.1:8111")
    try:
        controller, sup = make_controller(FakeSupervisor(), control=mine)
        assert not controller.in_control()
        with pytest.raises(NotInControl):
            await controller.ensure(frozenset(GATES), 5)
        with pytest.raises(NotInControl):
            await controller.stop()
        assert sup.calls == []
        assert "another sidecar" in await controller.control_problem()
        holder.close()
        result = await controller.ensure(frozenset(GATES), 5)
        assert sorted(result.started) == sorted(PROGRAMS)
        assert await controller.control_problem() == ""
    finally:
        holder.close()
        mine.close()
