# syntax=docker/dockerfile:1
#
# browser-stack as a layer on the AIO sandbox image (agent-infra/sandbox), the image
# DeerFlow runs its sandboxes in:
#
#   docker build -t aio-sandbox-lazy-browser .
#   docker build --build-arg BASE_IMAGE=ghcr.io/agent-infra/sandbox:latest -t ... .
#
# Unchanged behaviour unless the container is started with DISABLE_BROWSER_STACK=true
# (or AUTOSTART_BROWSER_STACK=false): then the five browser programs stay stopped at
# boot and the sidecar starts them on first use. See docs/aio-image.md.

ARG BASE_IMAGE=enterprise-public-cn-beijing.cr.volces.com/vefaas-public/all-in-one-sandbox:latest
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.8

FROM ${UV_IMAGE} AS uv

# Build on the base itself, so the wheels chosen match its libc and architecture.
FROM ${BASE_IMAGE} AS build
ARG PYTHON_VERSION=3.11
# A Python of our own (uv's standalone build under /opt/browser-stack/python) and a
# virtual environment on it: nothing of the image's Python is used or changed.
# Bytecode compiled here, once, not in every sandbox: uv leaves the packages as
# source, and a sidecar that compiles aiohttp and itself as it starts keeps the
# compiler's peak in its heap for good and starts later (bench/README.md).
# Importing what `serve` loads compiles the standard library's part of it too (the
# standalone build ships no bytecode).
ENV UV_PYTHON_INSTALL_DIR=/opt/browser-stack/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_NO_CACHE=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
COPY --from=uv /uv /usr/local/bin/uv
WORKDIR /src/browser-stack
COPY pyproject.toml README.md ./
COPY src ./src
RUN uv venv --python "${PYTHON_VERSION}" /opt/browser-stack/venv \
    && uv pip install --python /opt/browser-stack/venv/bin/python . \
    && /opt/browser-stack/venv/bin/browser-stack --help > /dev/null \
    && /opt/browser-stack/venv/bin/python -m browser_stack.client --help > /dev/null \
    && env -u PYTHONDONTWRITEBYTECODE /opt/browser-stack/venv/bin/python -c "import browser_stack.http_api"

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

ENV BROWSER_STACK_LOG_DIR=/var/log/browser-stack

# The doctor reads the image's supervisord files as supervisord will at boot with
# the switch on, and fails the build when the five do not match what the sidecar
# expects: their names, autostart following the switch, ports and display in their
# command lines, the browser's stop, their executables, the sidecar's own program.
RUN if [ "${BROWSER_STACK_DOCTOR}" != "off" ]; then \
        DISABLE_BROWSER_STACK=true browser-stack doctor --static --config /opt/gem/supervisord.conf; \
    fi

# The sidecar's /readyz: it serves, supervisord answers it and has the five programs
# (an image whose programs are missing is unhealthy); never wakes the browser stack.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/opt/browser-stack/venv/bin/python", "-m", "browser_stack.client", "readyz"]

# Sets the image's DISABLE_BROWSER/DISABLE_MCP_BROWSER/DISABLE_VNC and WAIT_PORTS
# when the switch is on, then execs the image's own entrypoint.
ENTRYPOINT ["/usr/local/bin/browser-stack-entrypoint", "--aio", "/opt/gem/run.sh"]
