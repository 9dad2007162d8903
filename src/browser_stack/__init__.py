"""browser-stack: start the AIO sandbox browser stack on demand."""

from __future__ import annotations

__version__ = "0.1.0"
