#!/usr/bin/env bash
# Which interpreter the sidecar should run on, measured per sandbox: the image built
# on the base's own python3 (scripts/build-image.sh's default) against one whose
# sidecar has an interpreter of its own, as uv's managed CPython gives it.
#
#   bench/python_choice.sh [--base IMAGE] [--sandboxes N]
#
# uv's managed CPython cannot be downloaded on this machine kind. Its stand-in is a
# copy of the base's own interpreter and standard library at another path
# (/opt/own-python): the same code, but in files of its own, so its pages are shared
# with none of the image's other Python processes (supervisord's here), as a
# separate CPython's would not be. Each image then runs as N lazy containers under
# python -m bench.fleet --engine podman; the idle memory per container is what differs.
# Writes bench/out/python-{base,own}.json and prints both capacity tables.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/container-engine.sh
. scripts/container-engine.sh

base=localhost/bstest-aio-standin:latest
sandboxes=5
while [ "$#" -gt 0 ]; do
    case $1 in
        --base) base=${2:?}; shift 2 ;;
        --sandboxes) sandboxes=${2:?}; shift 2 ;;
        *) echo "usage: $0 [--base IMAGE] [--sandboxes N]" >&2; exit 2 ;;
    esac
done
[ "$base" != localhost/bstest-aio-standin:latest ] || tests/container/aio-standin/build.sh

own_base=localhost/bstest-aio-own-python:latest
own_python='mkdir -p /opt/own-python/bin /opt/own-python/lib && cp /usr/bin/python3.11 /opt/own-python/bin/ && cp -a /usr/lib/python3.11 /opt/own-python/lib/'
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
printf 'FROM %s\nRUN %s\n' "$base" "$own_python" > "$context/Containerfile"
"$engine" build "${build_flags[@]}" --quiet -t "$own_base" "$context" > /dev/null

scripts/build-image.sh --base "$base" --tag localhost/bstest-python:base > /dev/null 2>&1
scripts/build-image.sh --base "$own_base" --tag localhost/bstest-python:own \
    --python /opt/own-python/bin/python3.11 > /dev/null 2>&1
"$engine" run --rm --entrypoint /opt/browser-stack/venv/bin/python localhost/bstest-python:own \
    -c 'import sys; assert sys.base_prefix == "/opt/own-python", sys.base_prefix'

for which in base own; do
    echo "== the sidecar on the $which interpreter"
    .venv/bin/python -m bench.fleet --engine podman --image "localhost/bstest-python:$which" \
        --mode lazy --sandboxes "$sandboxes" --concurrent 1 --rounds 1 --idle-timeout 5 \
        --json "bench/out/python-$which.json" --plot "bench/out/python-$which.png" \
        | sed -n '/^### Capacity/,/^### Startup/p' | sed '$d'
done
