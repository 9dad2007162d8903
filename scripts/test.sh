#!/usr/bin/env bash
# The test command: install what is missing (idempotent), run the linters, then every
# test tier (unit, integration, e2e, container) with the project's venv.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not container"` or `scripts/test.sh -x`.
# e2e tests skip when the programs are missing, container tests when podman cannot run
# a container (BROWSER_STACK_E2E_REQUIRED=1 and BROWSER_STACK_CONTAINER_REQUIRED=1, set
# by .ci/run, make those failures).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --dev
.venv/bin/ruff check src tests scripts bench examples
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
