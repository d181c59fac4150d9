"""``python -m xpnet``: the same as the ``xpnet`` command."""

from ._launch import run

run()
