"""``python -m xpnet``: the same as the ``xpnet`` command."""

from .cli import run

run()
