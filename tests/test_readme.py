"""The README's Python examples run as written, and its method list matches the registry."""

import re

from shellvae import METHODS
from tests.conftest import REPO

README = (REPO / "README.md").read_text()
BUILT_IN = sorted(METHODS)  # before the README's example registers one of its own


def test_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks, "the README has no python example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)


def test_every_method_is_listed():
    for name in BUILT_IN:
        assert f"`{name}`" in README, f"method {name!r} missing from the README's method table"


def test_setup_commands_present():
    assert "pip install torch==2.13.0" in README
    assert "shellvae demo" in README and "python -m pytest" in README
