"""The package's imports go one way, from data to reports: no circle, no lower layer importing a higher one.

``LAYERS`` is the one place the order is written down (docs/development.md shows it). A module may
import modules of its own layer or of lower ones; every ``import`` statement counts, at module level
or inside a function (an import moved into a function to dodge a circle is still a circle).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "shellvae"

#: lowest first; a name is a module or a subpackage of shellvae
LAYERS = [
    ("base", ["errors", "caller", "registry", "validation", "model_file", "io", "distributed"]),
    ("data", ["data"]),
    ("shell transform", ["shell"]),
    ("cluster geometry", ["variances", "kmeans", "autok", "geometry", "theory"]),
    ("model and objective", ["model", "objectives", "region"]),
    ("methods", ["methods"]),
    ("training", ["batches", "acceleration", "checkpoint", "train"]),
    ("metrics", ["metrics", "likelihood", "probes", "certificate"]),
    ("estimator", ["estimator_checks", "persistence", "estimator", "results", "diagnose", "sequence", "any_model"]),
    ("reports", ["tables", "figures", "experiments"]),
    ("entry points", ["run_folder", "cli_inputs", "cli", "__main__", "__init__"]),
]
RANK = {name: rank for rank, (_, names) in enumerate(LAYERS) for name in names}


def unit(module: str) -> str:
    """The layer unit of a dotted module name inside the package ('data.mnist' -> 'data')."""
    return module.split(".")[0]


def package_modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__") or "__init__": p
            for p in PACKAGE.rglob("*.py")}


def imports_of(path: Path, module: str) -> set[str]:
    """Every shellvae module ``path`` imports (relative imports resolved), anywhere in the file."""
    found = set()
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("shellvae")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(["shellvae", *package[:len(package) - node.level + 1]])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.startswith("shellvae"):
                found.add(target)
                # `from shellvae import io` imports the module shellvae.io
                found |= {f"{target}.{a.name}" for a in node.names if target == "shellvae"}
    return {m.removeprefix("shellvae").lstrip(".") for m in found} - {""}


MODULES = package_modules()
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    missing = sorted({unit(m) for m in MODULES} - set(RANK))
    assert not missing, f"add these to LAYERS in tests/test_layers.py: {missing}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    upward = sorted(t for t in GRAPH[module] if unit(t) in RANK and RANK[unit(t)] > RANK[unit(module)])
    assert not upward, f"{module} ({LAYERS[RANK[unit(module)]][0]}) imports higher layers: {upward}"


def test_no_import_circle():
    graph = {m: {t for t in targets if t in MODULES and t != m} for m, targets in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_a_function_level_import(tmp_path):
    """The test is not vacuous: an upward import hidden in a function is found."""
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    from shellvae.cli import main\n    from . import report\n")
    assert imports_of(fake, "shell") == {"cli", "report"}
    assert RANK["cli"] > RANK["shell"]


#: a module longer than this is split by what it does (issue: a house that reads one way)
MAX_MODULE_LINES = 400


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_longer_than_a_sitting(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{module} has {lines} lines: split it by what it does"
