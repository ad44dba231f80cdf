"""The benchmarks and scripts still match the library's API.

They run outside the suite (minutes to hours), so an API change would otherwise break them
silently: every file under ``bench/`` and ``scripts/`` is loaded here as a module (its imports
and top-level definitions run; its ``main`` does not).
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = sorted([*ROOT.glob("bench/*.py"), *ROOT.glob("scripts/*.py")])


def test_there_are_tools():
    assert len(TOOLS) >= 10


@pytest.mark.parametrize("path", TOOLS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tool_loads(path):
    namespace = runpy.run_path(str(path), run_name="tool_under_test")
    assert callable(namespace.get("main")), f"{path.name} has no main()"
