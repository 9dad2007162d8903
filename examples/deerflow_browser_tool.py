"""A DeerFlow browser tool for an AIO sandbox whose browser starts on first use.

What the tool does, in the functions below:

- when a sandbox is acquired for an agent that will browse, `on_acquire` pre-warms
  the browser: the sidecar answers 202 at once and starts Xvnc and Chromium in the
  background, so the start overlaps the model's first turn;
- on each call, `page_title` ensures the `cdp` gate (the first call after a cold
  start waits for it or joins the pre-warm; a warm one answers at once), connects
  Playwright over CDP, opens the page and returns its title. It closes its page
  and disconnects; the browser stays up for the next call until the sidecar's
  idle stop.

Run by hand, against a sandbox's gateway (as DeerFlow's backend reaches it) or
against the sidecar and Chromium directly (inside the sandbox):

    python examples/deerflow_browser_tool.py --sandbox http://SANDBOX:8080 https://example.com
    python examples/deerflow_browser_tool.py --browser-stack http://127.0.0.1:8110 \\
        --cdp http://127.0.0.1:9222 --prewarm https://example.com

It needs `browser_stack.client` (this repository's package: `pip install .`) and
Playwright's Python package (no browser download: it connects to the sandbox's).
tests/e2e/test_example_tool.py runs it against the real stack, and the container
tier through the image's gateway.

In a DeerFlow backend (DeerFlow and LangChain importable), the module also defines
the two names its config.yaml can use, copied into a module of the backend:

    sandbox:
      use: deerflow_browser_tool:PrewarmingAioSandboxProvider
      ...                                   # as for AioSandboxProvider
    tools:
      - name: browser_page_title
        group: web
        use: deerflow_browser_tool:browser_page_title_tool

Those two follow DeerFlow's source as read (AioSandboxProvider.acquire and
acquire_async, ensure_sandbox_initialized_async, AioSandbox.base_url, the
`@tool(..., parse_docstring=True)` tools of deerflow/sandbox/tools.py); they are not
run here, where DeerFlow cannot be installed from a package registry.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from dataclasses import dataclass

from browser_stack.client import (
    BrowserStackClientError,
    aensure_browser_stack,
    aprewarm_browser_stack,
    prewarm_browser_stack,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class SandboxBrowser:
    """Where a tool reaches one sandbox's browser stack: the sidecar's API and CDP."""

    browser_stack_url: str
    cdp_url: str

    @classmethod
    def behind_gateway(cls, sandbox_url: str) -> SandboxBrowser:
        """Through the AIO image's gateway (port 8080), as DeerFlow's backend reaches
        a sandbox: the sidecar under /browser-stack/, Chromium's CDP under /cdp/."""
        base = sandbox_url.rstrip("/")
        return cls(f"{base}/browser-stack", f"{base}/cdp/")


def on_acquire(browser: SandboxBrowser) -> None:
    """Pre-warm: start the browser in the background; never fails the acquire."""
    try:
        prewarm_browser_stack(browser.browser_stack_url, needs=["cdp"])
    except BrowserStackClientError as exc:
        log.warning("browser pre-warm failed (the first call will start it): %s", exc)


async def aon_acquire(browser: SandboxBrowser) -> None:
    """The async `on_acquire`."""
    try:
        await aprewarm_browser_stack(browser.browser_stack_url, needs=["cdp"])
    except BrowserStackClientError as exc:
        log.warning("browser pre-warm failed (the first call will start it): %s", exc)


async def page_title(
    browser: SandboxBrowser, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> str:
    """Open `url` in the sandbox's browser and return the page's title.

    Raises BrowserStackClientError when the browser cannot be had (ReadinessTimeout,
    ProgramFailed, DisabledByDeployment, Unreachable, ...) and Playwright's errors
    when the page cannot be loaded.
    """
    await aensure_browser_stack(browser.browser_stack_url, needs=["cdp"], timeout=timeout_s)
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.connect_over_cdp(
            browser.cdp_url, timeout=timeout_s * 1000
        )
        try:
            context = chromium.contexts[0] if chromium.contexts else await chromium.new_context()
            page = await context.new_page()
            try:
                await page.goto(url, timeout=timeout_s * 1000)
                return await page.title()
            finally:
                await page.close()
        finally:
            # Over CDP this disconnects; Chromium and its other pages stay.
            await chromium.close()


try:  # DeerFlow's side: only inside a DeerFlow backend
    from deerflow.community.aio_sandbox import AioSandboxProvider
    from deerflow.sandbox.tools import ensure_sandbox_initialized_async
    from deerflow.tools.types import Runtime
    from langchain.tools import tool
except ImportError:
    pass
else:

    class PrewarmingAioSandboxProvider(AioSandboxProvider):
        """AioSandboxProvider that pre-warms the browser of every sandbox it hands
        out. Use it where the agents that get sandboxes browse; elsewhere it would
        wake every sandbox's browser, and the first call pays the cold start
        instead (bench/README.md has its cost)."""

        def acquire(self, thread_id: str | None = None, *, user_id: str | None = None) -> str:
            sandbox_id: str = super().acquire(thread_id, user_id=user_id)
            self._prewarm(sandbox_id)
            return sandbox_id

        async def acquire_async(
            self, thread_id: str | None = None, *, user_id: str | None = None
        ) -> str:
            sandbox_id: str = await super().acquire_async(thread_id, user_id=user_id)
            sandbox = self.get(sandbox_id)
            if sandbox is not None:
                await aon_acquire(SandboxBrowser.behind_gateway(sandbox.base_url))
            return sandbox_id

        def _prewarm(self, sandbox_id: str) -> None:
            sandbox = self.get(sandbox_id)
            if sandbox is not None:
                on_acquire(SandboxBrowser.behind_gateway(sandbox.base_url))

    @tool("browser_page_title", parse_docstring=True)
    async def browser_page_title_tool(runtime: Runtime, url: str) -> str:
        """Open a web page in the sandbox's browser and return its title.

        Args:
            url: The address of the page to open.
        """
        sandbox = await ensure_sandbox_initialized_async(runtime)
        try:
            return await page_title(SandboxBrowser.behind_gateway(sandbox.base_url), url)
        except BrowserStackClientError as exc:
            return f"Error: the sandbox's browser is not available: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print a page's title, read in a sandbox's browser."
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sandbox", help="the sandbox's gateway, http://host:8080")
    where.add_argument("--browser-stack", help="the sidecar's URL (with --cdp)")
    parser.add_argument("--cdp", help="Chromium's CDP URL (with --browser-stack)")
    parser.add_argument("--prewarm", action="store_true", help="pre-warm first, as on acquire")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("url")
    args = parser.parse_args(argv)
    if args.sandbox:
        browser = SandboxBrowser.behind_gateway(args.sandbox)
    elif args.cdp:
        browser = SandboxBrowser(args.browser_stack, args.cdp)
    else:
        parser.error("--browser-stack needs --cdp")
    if args.prewarm:
        on_acquire(browser)
    try:
        print(asyncio.run(page_title(browser, args.url, timeout_s=args.timeout)))
    except BrowserStackClientError as exc:
        print(f"the browser is not available: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
