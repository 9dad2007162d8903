"""Who holds a port: the answer to "why did Chromium not come up on 9222?"."""

from __future__ import annotations

import asyncio
import contextlib

from browser_stack.core_types import PortHolder
from browser_stack.probes import listening_inode


def find_holder(port: int) -> PortHolder | None:
    """The process listening on `port`, or None if nothing listens there."""
    if listening_inode(port) is None:  # cheap: one read of /proc/net
        return None
    import psutil  # only when something holds the port: the sidecar at rest never loads it

    with contextlib.suppress(psutil.Error):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                if conn.pid is None:
                    break
                name = "?"
                with contextlib.suppress(psutil.Error):
                    name = " ".join(psutil.Process(conn.pid).cmdline())[:120] or name
                return PortHolder(port, conn.pid, name)
    return PortHolder(port, None, "")


async def holder_of(port: int) -> PortHolder | None:
    return await asyncio.to_thread(find_holder, port)
