"""The README's headline results and the Findings say exactly what their files say.

Every measured number there carries a marker (docs/check_numbers.py) that recomputes it from the
file it cites; these tests evaluate every marker, require one on every measured-looking number of
those sections, and show on a copy that a changed file fails the check.
"""

import csv
import shutil
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "docs"))
import check_numbers  # noqa: E402

README = REPO / "README.md"
RESULTS = REPO / "docs" / "results.md"


def section(path, heading: str) -> str:
    """The text of a Markdown section, from its heading to the next heading of the same level."""
    text = path.read_text()
    level = heading.split(" ")[0]
    start = text.index(heading + "\n")
    end = text.find("\n" + level + " ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


CHECKED = [(README, "## Headline results"), (RESULTS, "### The paper's protocol on the synthetic mixture (`full` profile)"),
           (RESULTS, "### The paper's protocol on MNIST (`full` profile)"),
           (RESULTS, "### The paper's protocol on Fashion-MNIST (`full` profile)")]


@pytest.mark.parametrize("path", [README, RESULTS], ids=lambda p: p.name)
def test_every_marker_holds(path):
    assert check_numbers.check(path.read_text()) == []


@pytest.mark.parametrize("path,heading", CHECKED, ids=lambda x: getattr(x, "name", x)[:40])
def test_every_measured_number_is_marked(path, heading):
    assert check_numbers.unmarked(section(path, heading)) == []


def test_a_changed_file_fails_the_check(tmp_path):
    """On a copy: the README's first marked Table 1 number, with its cell in table1.csv moved."""
    text = section(README, "## Headline results")
    match = next(m for m in check_numbers.MARKER.finditer(text) if m.group(1).strip().startswith("t1("))
    snippet = check_numbers.TOKEN.search(text[:match.start()]).group(1) + match.group(0)  # the number and its marker
    table = "docs/results/full/table1.csv"
    (tmp_path / table).parent.mkdir(parents=True)
    shutil.copy(REPO / table, tmp_path / table)
    copy = check_numbers.Lookups(tmp_path)
    assert check_numbers.check(snippet, copy) == []

    args = eval(match.group(1).strip()[2:], {})  # noqa: S307 (t1's arguments, a tuple: condition, dataset, label, column)
    rows = list(csv.DictReader(open(tmp_path / table, newline="")))
    for row in rows:
        if (row["condition"], row["dataset"], row["label"]) == args[:3]:
            row[args[3]] = str(float(row[args[3]]) + 1.0)
    with open(tmp_path / table, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    problems = check_numbers.check(snippet, check_numbers.Lookups(tmp_path))
    assert len(problems) == 1 and "the prose says" in problems[0]


@pytest.mark.parametrize("prose,value,holds", [
    ("0.455", 0.4549, True), ("0.455", 0.4561, False), ("67.5%", 67.46, True), ("1,097.21", 1097.2149, True),
    ("1e-9", 1.2e-9, True), ("1e-9", 3e-9, False), ("3/3", "3/3", True), ("2/3", "3/3", False), ("−0.35", -0.35, True),
])
def test_a_number_matches_to_the_digits_it_shows(prose, value, holds):
    class Fixed(check_numbers.Lookups):
        def namespace(self):
            return {"v": lambda: value}

    assert (check_numbers.check(f"KL {prose}<!--= v() -->", Fixed()) == []) is holds
