"""The CSV reader's format and message tests (test_user_files.py, test_csv_messages.py) run again
on each bulk parser, forced: np.loadtxt, and pandas' C parser (xpnet.csvfile.PARSER). Elsewhere
the parser is chosen by size, and by whether pandas was imported first, so either may go untested."""

from __future__ import annotations

import pytest
from test_csv_messages import *  # noqa: F403  (each test keeps its own module's helpers)
from test_user_files import *  # noqa: F403

from xpnet import csvfile


@pytest.fixture(autouse=True, params=["numpy", "pandas"])
def bulk_parser(request, monkeypatch):
    if request.param == "pandas":
        pytest.importorskip("pandas")
    monkeypatch.setattr(csvfile, "PARSER", request.param)
    return request.param
