"""The container tier: the project's image built by scripts/build-image.sh on the AIO
stand-in (tests/container/aio-standin/), run under podman with the project's
containers.conf, and reached as a user would: through the gateway's published port.

The tier skips with a one-line reason where podman cannot run a container, and fails
instead when BROWSER_STACK_CONTAINER_REQUIRED=1 (.ci/run sets it). Every container,
pod and volume it makes is named bstest-* and labelled browser-stack-test=1: each
fixture removes its own on every exit, and a sweep at the start of the session
removes what a killed run left. The images are kept, as the build's cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from scripts import containers

from .. import helpers
from ..helpers import PREFIX, free_port, request, wait_for

# The gateway's route to the sidecar.
SIDECAR_ROUTE = "/browser-stack"
# A page nginx serves inside the container (tests/container/aio-standin/nginx.conf).
PAGE = "http://127.0.0.1:8080/standin/page.html"
# What the five run as, as `ps` names them (node is mcp-server-browser).
STACK_COMMANDS = ("Xvnc", "openbox", "chromium", "node", "websocat")
IMAGE_TAG = "localhost/bstest-browser-stack:eager"
LAZY_IMAGE_TAG = "localhost/bstest-browser-stack:eager-lazy"


def no_engine(reason: str) -> NoReturn:
    if os.environ.get("BROWSER_STACK_CONTAINER_REQUIRED") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    reason = containers.unusable()
    if reason is not None:
        no_engine(reason)
    containers.sweep()
    yield
    left = containers.sweep()
    assert not left, f"containers, pods or volumes left behind by a test: {left}"


@pytest.fixture(scope="session")
def standin(engine: None) -> str:
    tag: str = containers.build_standin()
    return tag


@pytest.fixture(scope="session")
def image(standin: str) -> str:
    tag, _seconds = containers.build_image(standin, IMAGE_TAG)
    return str(tag)


@pytest.fixture(scope="session")
def lazy_image(standin: str, image: str) -> str:
    tag, _seconds = containers.build_image(standin, LAZY_IMAGE_TAG, lazy=True)
    return str(tag)


def status(url: str) -> dict[str, Any]:
    """The sidecar's status through the gateway (never wakes the stack)."""
    return helpers.status(url, SIDECAR_ROUTE)


def states(url: str) -> dict[str, str]:
    return helpers.states(url, SIDECAR_ROUTE)


def api(container: Any, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One call to the sidecar's API through the container's gateway."""
    code, out = request(container.url, method, SIDECAR_ROUTE + PREFIX + path, body, timeout=90)
    return code, out


def stack_processes(container: Any) -> list[str]:
    return [c for c in container.processes() if c.startswith(STACK_COMMANDS)]


def wait_serving(container: Any, timeout: float = 120) -> None:
    """Until the sidecar answers /readyz through the container's gateway."""

    def ready() -> bool:
        if not container.inspect()["State"]["Running"]:
            raise AssertionError(f"{container.name} exited:\n{container.logs()[-4000:]}")
        try:
            return request(container.url, "GET", "/browser-stack/readyz", timeout=5).status == 200
        except OSError:
            return False

    wait_for(
        ready, timeout=timeout, what=f"/browser-stack/readyz of {container.name}", interval=0.2
    )


@pytest.fixture
def sandbox_factory(engine: None) -> Iterator[Any]:
    """Start containers that are removed when the test ends, whatever happens."""
    made: list[Any] = []

    def start(image: str, **kwargs: Any) -> Any:
        container = containers.start(image, free_port(), **kwargs)
        made.append(container)
        wait_serving(container)
        return container

    try:
        yield start
    finally:
        for container in made:
            containers.remove(container.name)
