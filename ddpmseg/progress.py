"""Progress bars that stay readable in log files."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(iterable: Any = None, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; redrawn at most every 5 s when stderr is a log file, not a terminal."""
    isatty = getattr(sys.stderr, "isatty", lambda: False)
    if not isatty():
        kwargs.setdefault("mininterval", 5.0)
    return tqdm(iterable, file=sys.stderr, **kwargs)
