from __future__ import annotations

import sys

from browser_stack.cli import main

sys.exit(main())
