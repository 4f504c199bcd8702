"""Entry point for ``segsuite`` and ``python -m segsuite.cli``."""

from __future__ import annotations

import sys

from .app import build_cli, main

__all__ = ["build_cli", "main"]

if __name__ == "__main__":
    sys.exit(main())
