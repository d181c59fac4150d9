"""Helpers shared by the command-line tests (imported by name: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json

from xpnet.cli import main


def run(argv) -> int:
    """``main(argv)``'s exit code, also when argparse exits by itself (usage errors, --help)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def last_json(out: str) -> dict:
    """The JSON object on the last line of stdout."""
    return json.loads(out.strip().splitlines()[-1])
