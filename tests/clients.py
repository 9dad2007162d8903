"""Real clients of the stack, for the e2e and container tiers: Playwright over CDP,
a websocket reading the RFB banner through websocat, the MCP SDK over SSE."""

from __future__ import annotations

import asyncio

RFB_BANNER = b"RFB 003.008\n"


async def page_text(cdp: str, url: str, selector: str) -> str | None:
    """Connect Playwright over CDP (http or ws URL), load `url` in a new page and
    return the text of `selector`."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.connect_over_cdp(cdp)
        try:
            context = browser.contexts[0] if browser.contexts else await browser.new_context()
            page = await context.new_page()
            await page.goto(url)
            text = await page.text_content(selector)
            await page.close()
            return text
        finally:
            await browser.close()


async def set_cookie(cdp: str, url: str, name: str, value: str) -> None:
    """Load `url` and set a persistent cookie on it from the page, as a site would."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.connect_over_cdp(cdp)
        try:
            page = await browser.contexts[0].new_page()
            await page.goto(url)
            await page.evaluate(f"document.cookie = '{name}={value}; max-age=86400; path=/'")
            await page.close()
        finally:
            await browser.close()


async def cookies(cdp: str, url: str) -> dict[str, str]:
    """The cookies the browser's default context holds for `url`."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.connect_over_cdp(cdp)
        try:
            found = await browser.contexts[0].cookies(url)
            return {c["name"]: c["value"] for c in found if "name" in c and "value" in c}
        finally:
            await browser.close()


async def rfb_banner_over_websocket(url: str, read_timeout_s: float = 30) -> bytes:
    """The first bytes VNC sends through a websocket bridge (websocat), up to the banner."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        data = b""
        while len(data) < len(RFB_BANNER):
            msg = await asyncio.wait_for(ws.receive(), timeout=read_timeout_s)
            assert msg.type == aiohttp.WSMsgType.BINARY, msg
            data += msg.data
        return data


async def mcp_tool_names(sse_url: str) -> list[str]:
    """Open an MCP session over SSE and list the server's tools."""
    from mcp import ClientSession
    from mcp.client.sse import sse_client

    async with sse_client(sse_url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return [tool.name for tool in (await session.list_tools()).tools]
