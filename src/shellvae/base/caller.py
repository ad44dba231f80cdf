"""Warnings point at the user's line, not at shellvae's insides.

``warnings.warn(..., stacklevel=user_stacklevel())`` names the first frame outside the package (and
outside click, which runs the command line): the line of the user's code that led to the warning,
however deep inside shellvae it was raised (a fixed stacklevel names whichever shellvae function
happened to call, e.g. ``distributed.run_once``).
"""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE = str(Path(__file__).resolve().parents[1]) + "/"  # shellvae/, above base/


def _inside(filename: str) -> bool:
    """A frame of shellvae's own code, or of click's (the command line: no user line there)."""
    path = filename.replace("\\", "/")
    return path.startswith(_PACKAGE) or "/click/" in path


def user_stacklevel() -> int:
    """The ``stacklevel`` for a ``warnings.warn`` in the function calling this one: that of the nearest caller
    outside shellvae (1 = the function itself, when nothing outside is found)."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and _inside(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    return level
