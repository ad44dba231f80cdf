"""The documentation's Python examples run as written, its method table matches the registry, and
it refers to nothing outside the project.

Every ```python block of README.md and of the pages in docs/ runs, each page's blocks in order in
one namespace. A block preceded by the line ``<!-- docs-test: skip (reason) -->`` is not run.
"""

import re

import pytest

from shellvae import ARCHITECTURES, DATASETS, METHODS, METRICS, metrics_for
from tests.conftest import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
BUILT_IN = sorted(METHODS)  # before an example registers a method of its own

SKIP = "<!-- docs-test: skip"


def python_blocks(path):
    """(code, skipped) for each ```python block of a Markdown file, in order."""
    text = path.read_text()
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        preceding = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        blocks.append((match.group(1), preceding.strip().startswith(SKIP)))
    return blocks


def _name(path):
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", [p for p in PAGES if python_blocks(p)], ids=_name)
def test_python_examples_run(path):
    registries = (METHODS, DATASETS, METRICS, ARCHITECTURES)
    before = [set(r) for r in registries]
    namespace: dict = {"__name__": "__docs_example__"}
    try:
        for code, skipped in python_blocks(path):
            if not skipped:
                exec(compile(code, _name(path), "exec"), namespace)
    finally:  # an example may register a method, dataset, metric or architecture: leave the registries as they were
        for registry, names in zip(registries, before):
            for name in set(registry) - names:
                registry.remove(name)


def test_readme_has_a_python_example():
    assert any(not skipped for _, skipped in python_blocks(README)), "the README has no python example"


def test_skipped_copies_of_the_readme_example_are_identical():
    readme_blocks = {code for code, _ in python_blocks(README)}
    index = DOCS / "index.md"
    for code, skipped in python_blocks(index):
        if skipped:
            assert code in readme_blocks, "docs/index.md's example must stay identical to the README's"


def test_every_method_is_listed():
    methods_page = (DOCS / "methods.md").read_text()
    table = {m.group(1) for m in re.finditer(r"^\| `([a-z_0-9]+)` \|", methods_page, flags=re.M)}
    for name in BUILT_IN:
        assert name in table, f"method {name!r} missing from the method table of docs/methods.md"


def test_setup_commands_present():
    text = README.read_text()
    assert 'pip install torch==2.13.0 -e . && shellvae demo' in text
    assert 'pip install torch==2.13.0 -e ".[test]" && python -m pytest -q' in text


def test_no_reference_to_files_outside_the_project():
    """Users see the package and its docs, not the team's notes: the method is docs/method.md."""
    assert (DOCS / "method.md").is_file()
    notes = "METHOD" + ".md"  # the team's notes, which users never see (spelled so this file passes)
    shared = "../" + "shared"  # the team's folder beside the repository
    code = [*(REPO / "src").rglob("*.py"), *(REPO / "tests").glob("*.py"), *(REPO / "bench").glob("*.py"),
            *(p for p in (REPO / "scripts").glob("*") if p.is_file())]
    for path in [*PAGES, *sorted(code)]:
        text = path.read_text()
        assert notes not in text, f"{_name(path)} refers to {notes}; the method is docs/method.md"
        assert shared not in text or path.parent.name in ("tests", "bench", "scripts"), \
            f"{_name(path)} points into {shared}, which users do not have"


def test_every_registered_metric_is_documented():
    """docs/metrics.md's table names every key evaluate() returns (a new metric cannot go undocumented)."""
    text = (DOCS / "metrics.md").read_text()
    table_keys = set(re.findall(r"^\| `([a-z0-9_]+)`(?:, `([a-z0-9_]+)`)?", text, flags=re.M))
    documented = {key for pair in table_keys for key in pair if key}
    missing = [m.name for m in metrics_for("vector") if m.name not in documented]
    assert not missing, f"docs/metrics.md does not document: {missing}"


def test_every_sequence_metric_is_documented():
    """docs/sequences.md's metrics table names every key of the sequence family (metrics_for("sequence"))."""
    text = (DOCS / "sequences.md").read_text()
    table = text[text.index("## Metrics"):].split("\n\n")[2]
    documented = set(re.findall(r"`([a-z0-9_]+)`", table))
    missing = [m.name for m in metrics_for("sequence") if m.name not in documented]
    assert not missing, f"docs/sequences.md's metrics table does not document: {missing}"
