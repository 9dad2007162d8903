"""scripts/build-image.sh on a base the project did not lay out itself: the stand-in
rewritten the way another AIO-like image could be, still following the layout
docs/aio-image.md describes. The differences: the five programs in a file each under
other file names and with other settings (priorities, log files, the browser's
profile elsewhere), another program beside them that follows an image switch of its
own (a Jupyter stand-in, DISABLE_JUPYTER), an ENTRYPOINT, CMD, WORKDIR and
HEALTHCHECK of the base's own, and its nginx routes in a file of their own."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..clients import page_text
from ..helpers import PROGRAMS
from .conftest import containers, states
from .other_base import JUPYTER_SWITCH, PROGRAM_FILE, PROGRAMS_OF_THE_BASE

BASE_TAG = "localhost/bstest-aio-other-base:latest"
IMAGE_TAG = "localhost/bstest-browser-stack:other-base"


def base_context(root: Path) -> Path:
    """The build context of the other base: files written here, on the stand-in."""
    gem = root / "gem"
    (gem / "supervisord").mkdir(parents=True)
    for priority, (name, (command, autostart, more)) in enumerate(
        PROGRAMS_OF_THE_BASE.items(), start=1
    ):
        (gem / "supervisord" / f"{priority:02d}-{name}.conf").write_text(
            PROGRAM_FILE.format(
                name=name,
                command=command,
                autostart=autostart,
                priority=priority * 10,
                stopasgroup="false" if name == "browser" else "true",
                more=more,
            )
        )
    (root / "Containerfile").write_text(
        f"""FROM {containers.STANDIN_TAG}
RUN rm /opt/gem/supervisord/browser.conf \\
    && sed -i 's|^exec supervisord|{JUPYTER_SWITCH}\\nexec supervisord|' /opt/gem/run.sh \\
    && mkdir -p /var/log/gem /home/gem/.config
COPY gem/supervisord/ /opt/gem/supervisord/
WORKDIR /home/gem
HEALTHCHECK --interval=10s CMD ["/bin/false"]
ENTRYPOINT ["/bin/bash", "-c", "exec /opt/gem/run.sh \\"$@\\"", "run.sh"]
CMD ["--from-the-base"]
"""
    )
    return root


@pytest.fixture(scope="module")
def other_image(standin: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = base_context(tmp_path_factory.mktemp("other-base"))
    containers.podman(
        "build",
        "--format",
        "docker",
        "--quiet",
        "-t",
        BASE_TAG,
        "-f",
        str(context / "Containerfile"),
        str(context),
        timeout=600,
    )
    tag, _seconds = containers.build_image(BASE_TAG, IMAGE_TAG)
    return str(tag)


@pytest.fixture
def sandbox(other_image: str, sandbox_factory: Any) -> Iterator[Any]:
    yield sandbox_factory(other_image, env={"DISABLE_BROWSER_STACK": "true"})


def test_the_image_on_another_aio_like_base(other_image: str, sandbox: Any) -> None:
    [config] = containers.podman_json("image", "inspect", other_image)
    # the layer's entrypoint and health check replace the base's, and its ENTRYPOINT
    # drops the base's CMD (which would reach run.sh as arguments)
    assert config["Config"]["Entrypoint"] == [
        "/usr/local/bin/browser-stack-entrypoint",
        "--aio",
        "/opt/gem/run.sh",
    ]
    assert not config["Config"].get("Cmd")
    assert "readyz" in config["Healthcheck"]["Test"]
    checked = containers.podman("healthcheck", "run", sandbox.name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # lazy: none of the five; the base's other program follows its own switch
    all_states = states(sandbox.url)
    assert all_states == dict.fromkeys(PROGRAMS, "STOPPED")
    assert "sleep" in sandbox.processes()
    # a gated CDP route wakes the stack and a real client loads a page
    with urllib.request.urlopen(sandbox.url + "/cdp/json/version", timeout=60) as r:
        ws_url = json.loads(r.read())["webSocketDebuggerUrl"]
    page = "http://127.0.0.1:8080/standin/page.html"
    assert asyncio.run(page_text(ws_url, page, "#x")) == "stand-in page"
    profile = sandbox.exec("ls", "/home/gem/.config/chromium")
    assert "Default" in profile.split()
