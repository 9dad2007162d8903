# syntax=docker/dockerfile:1
#
# browser-stack as a layer on the AIO sandbox image (agent-infra/sandbox), the image
# DeerFlow runs its sandboxes in:
#
#   docker build -t aio-sandbox-lazy-browser:0.1.0 .
#   docker build --build-arg BASE_IMAGE=ghcr.io/agent-infra/sandbox:latest -t ... .
#   docker build --build-arg BROWSER_STACK_DEFAULT=lazy -t aio-sandbox-lazy-browser:0.1.0-lazy .
#
# scripts/build-image.sh does the same with podman or docker, on a machine that
# reaches nothing but the package registries.
#
# Unchanged behaviour unless the container is started with LAZY_START_BROWSER_STACK=true
# (or DISABLE_BROWSER_STACK=true, AUTOSTART_BROWSER_STACK=false): then the five browser
# programs stay stopped at boot and the sidecar starts them on first use. See
# docs/aio-image.md.

ARG BASE_IMAGE=enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8
FROM ${UV_IMAGE} AS uv

# Build on the base itself, so the wheels chosen match its libc and architecture.
FROM ${BASE_IMAGE} AS build
ARG PYTHON_VERSION=3.11
# The sidecar's interpreter. managed: uv's standalone CPython ${PYTHON_VERSION} under
# /opt/browser-stack/python, which works on any base but is one more interpreter in
# memory. A path (/usr/bin/python3): the base's own interpreter, 3.11 or later, whose
# pages the sidecar then shares with the image's other Python processes
# (scripts/build-image.sh's default; bench/README.md has both measured). Either way
# the venv is the sidecar's own: nothing of the image's Python packages is used or
# changed.
ARG BROWSER_STACK_PYTHON=managed
# Bytecode compiled here, once, not in every sandbox: uv leaves the packages as
# source, and a sidecar that compiles aiohttp and itself as it starts keeps the
# compiler's peak in its heap for good and starts later (bench/README.md).
# Importing what `serve` loads compiles the standard library's part of it too (the
# standalone build ships no bytecode).
ENV UV_PYTHON_INSTALL_DIR=/opt/browser-stack/python \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /src/browser-stack
COPY pyproject.toml README.md ./
COPY src ./src
# build-ca, an optional build secret: a CA bundle for HTTPS from inside the build (a
# TLS-inspecting proxy); mounted for this step only, so no layer carries it.
RUN --mount=type=secret,id=build-ca \
    if [ -s /run/secrets/build-ca ]; then export SSL_CERT_FILE=/run/secrets/build-ca; fi \
    && if [ "${BROWSER_STACK_PYTHON}" = managed ]; then \
        UV_PYTHON_PREFERENCE=only-managed uv venv --python "${PYTHON_VERSION}" /opt/browser-stack/venv; \
    else \
        UV_PYTHON_PREFERENCE=only-system uv venv --python "${BROWSER_STACK_PYTHON}" /opt/browser-stack/venv \
        && /opt/browser-stack/venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11) and f"BROWSER_STACK_PYTHON={sys.executable} is {sys.version.split()[0]}; the sidecar needs 3.11 or later (or BROWSER_STACK_PYTHON=managed)")'; \
    fi \
    && uv pip install --python /opt/browser-stack/venv/bin/python . \
    && /opt/browser-stack/venv/bin/browser-stack --help > /dev/null \
    && /opt/browser-stack/venv/bin/python -m browser_stack.client --help > /dev/null \
    && env -u PYTHONDONTWRITEBYTECODE /opt/browser-stack/venv/bin/python -c "import browser_stack.server"

FROM ${BASE_IMAGE}
# off: skip the doctor below, for a base whose supervisord layout is known to differ.
ARG BROWSER_STACK_DOCTOR=on
COPY --from=build /opt/browser-stack /opt/browser-stack
# The sidecar's supervisord program (command=browser-stack serve) in the image's
# include directory; the five programs are the image's own, so
# supervisord.d/browser-stack-programs.conf (for a standalone image) is not copied.
COPY supervisord.d/browser-stack.conf /opt/gem/supervisord/browser-stack.conf
# Gateway: /browser-stack/ and the internal gate locations, in the directory whose
# *.conf the image's nginx includes in its server; gate-*.conf for its locations.
COPY deploy/nginx/browser-stack.conf /opt/gem/nginx/browser-stack.conf
COPY deploy/nginx/gate-cdp.conf deploy/nginx/gate-mcp.conf deploy/nginx/gate-vnc.conf /opt/browser-stack/nginx/
COPY bin/browser-stack-entrypoint /usr/local/bin/browser-stack-entrypoint
RUN ln -s /opt/browser-stack/venv/bin/browser-stack /usr/local/bin/browser-stack \
    && chmod 0755 /usr/local/bin/browser-stack-entrypoint \
    && mkdir -p /var/log/browser-stack

# What a container started with no switch set does. eager: the stack starts at
# boot, as the image always did. lazy: as if LAZY_START_BROWSER_STACK=true, for
# orchestrators that pass no environment (DeerFlow's provisioner); a container's own
# LAZY_START_BROWSER_STACK=false (or DISABLE_BROWSER_STACK=false,
# AUTOSTART_BROWSER_STACK=true) still wins. The entrypoint reads it.
ARG BROWSER_STACK_DEFAULT=eager
ENV BROWSER_STACK_DEFAULT=${BROWSER_STACK_DEFAULT}
ENV BROWSER_STACK_LOG_DIR=/var/log/browser-stack

# The default is checked here rather than at the first boot. The doctor reads the
# image's supervisord files as supervisord will at boot with the switch on, and fails
# the build when the five do not match what the sidecar expects: their names,
# autostart following the switch, ports and display in their command lines, the
# browser's stop, their executables, the sidecar's own program. Whether the browser's
# stop keeps its cookies matters with idle stop on, which a container decides
# (BROWSER_STACK_IDLE_TIMEOUT; lazy mode's default is on): off here, it is a warning
# in the build log, and the running container's doctor judges it.
RUN case "${BROWSER_STACK_DEFAULT}" in \
        eager | lazy) ;; \
        *) echo "BROWSER_STACK_DEFAULT=${BROWSER_STACK_DEFAULT}: expected eager or lazy" >&2; exit 2 ;; \
    esac \
    && if [ "${BROWSER_STACK_DOCTOR}" != "off" ]; then \
        LAZY_START_BROWSER_STACK=true BROWSER_STACK_IDLE_TIMEOUT=0 \
            browser-stack doctor --static --config /opt/gem/supervisord.conf; \
    fi

# The sidecar's /readyz: it serves, supervisord answers it and has the five programs
# (an image whose programs are missing is unhealthy); never wakes the browser stack.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/browser-stack/venv/bin/python", "-m", "browser_stack.client", "readyz"]

# Sets the image's DISABLE_BROWSER/DISABLE_MCP_BROWSER/DISABLE_VNC and WAIT_PORTS
# when the switch is on, then execs the image's own entrypoint.
ENTRYPOINT ["/usr/local/bin/browser-stack-entrypoint", "--aio", "/opt/gem/run.sh"]
