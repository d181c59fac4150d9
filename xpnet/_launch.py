"""The console script's entry point: imports nothing heavy before it can catch Ctrl-C.

A Ctrl-C while NumPy and the rest load (about a second on a cold disk) would
otherwise end in a traceback from the import machinery; here it is one line, exit 130.
"""

from __future__ import annotations

import sys


def run() -> None:
    """Run ``xpnet`` with ``sys.argv`` and exit with its code."""
    try:
        from .cli import main

        code = main()
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
