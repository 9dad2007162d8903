#!/usr/bin/env bash
# Build the project's image (the Dockerfile) with podman or docker, whichever is installed
# (BROWSER_STACK_ENGINE=podman|docker chooses):
#
#   scripts/build-image.sh [--base IMAGE] [--tag TAG] [--lazy] [--python PATH|managed] [-- ARG...]
#
#   --base IMAGE   the AIO-like image to build on (default: the Dockerfile's BASE_IMAGE);
#                  it must follow the layout docs/aio-image.md describes
#   --tag TAG      default aio-sandbox-lazy-browser:VERSION, and VERSION-lazy with --lazy
#   --lazy         BROWSER_STACK_DEFAULT=lazy: DISABLE_BROWSER_STACK=true baked in, for
#                  orchestrators that pass no environment (still overridable)
#   --python P     the sidecar's interpreter: the base's own (default /usr/bin/python3,
#                  3.11 or later; it shares its pages with the image's other Python
#                  processes, bench/README.md) or `managed` (uv's standalone CPython,
#                  for a base without one)
#   -- ARG...      passed to the engine's build, e.g. --build-arg BROWSER_STACK_DOCTOR=off
#
# Reaches nothing but the package registries: uv comes from its PyPI wheel (the binary
# its image carries) as a local image, and the machine's CA bundle (SSL_CERT_FILE, else
# /etc/ssl/certs/ca-certificates.crt) goes to the build as the build-ca secret, which
# only the install step mounts, so no layer keeps it. Prints the image's tag last.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: $0 [--base IMAGE] [--tag TAG] [--lazy] [--python PATH|managed] [-- ARG...]" >&2
    exit 2
}

base=
tag=
lazy=0
python=/usr/bin/python3
while [ "$#" -gt 0 ]; do
    case $1 in
        --base) base=${2:-}; [ -n "$base" ] || usage; shift 2 ;;
        --tag) tag=${2:-}; [ -n "$tag" ] || usage; shift 2 ;;
        --lazy) lazy=1; shift ;;
        --python) python=${2:-}; [ -n "$python" ] || usage; shift 2 ;;
        --) shift; break ;;
        *) usage ;;
    esac
done

# shellcheck source=scripts/container-engine.sh
. scripts/container-engine.sh

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
if [ -z "$tag" ]; then
    tag=aio-sandbox-lazy-browser:$version
    [ "$lazy" = 0 ] || tag=$tag-lazy
fi
args=(--build-arg "BROWSER_STACK_PYTHON=$python")
[ -z "$base" ] || args+=(--build-arg "BASE_IMAGE=$base")
[ "$lazy" = 0 ] || args+=(--build-arg BROWSER_STACK_DEFAULT=lazy)

# uv: the Dockerfile's pinned version, from its PyPI wheel, as a local image.
uv_version=$(sed -n 's|^ARG UV_IMAGE=.*/uv:\(.*\)$|\1|p' Dockerfile)
uv_image=localhost/browser-stack-uv:$uv_version
if ! "$engine" image inspect "$uv_image" > /dev/null 2>&1; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    "$host_python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "uv==$uv_version"
    "$host_python" - "$work" << 'PY'
import pathlib, sys, zipfile
work = pathlib.Path(sys.argv[1])
[wheel] = work.glob("uv-*.whl")
with zipfile.ZipFile(wheel) as zf:
    for name in ("uv", "uvx"):
        [member] = [n for n in zf.namelist() if n.endswith(f".data/scripts/{name}")]
        (work / name).write_bytes(zf.read(member))
        (work / name).chmod(0o755)
PY
    printf 'FROM scratch\nCOPY uv uvx /\n' > "$work/Containerfile"
    "$engine" build --quiet -t "$uv_image" -f "$work/Containerfile" "$work" > /dev/null
    echo "build-image: $uv_image from uv's PyPI wheel" >&2
fi
args+=(--build-arg "UV_IMAGE=$uv_image")

ca=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$ca" ]; then
    args+=(--secret "id=build-ca,src=$ca")
fi

"$engine" build "${build_flags[@]}" "${args[@]}" "$@" -t "$tag" . >&2
echo "$tag"
