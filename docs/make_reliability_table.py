"""Regenerate the generated part of docs/reliability.md: the bad-input table and the fuzzing counts.

    python docs/make_reliability_table.py

They come from the tests (``tests/test_reliability.py``: ``BAD_INPUTS``; ``tests/test_data_fuzz.py``;
``tests/test_cli_fuzz.py``),
so the doc shows the exact errors the code gives; ``test_reliability_doc_is_in_sync`` fails when it is stale.
"""

import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

torch.set_num_threads(1)  # as the tests (tests/conftest.py)

from shellvae.base import storage  # noqa: E402
from tests.test_reliability import BAD_INPUTS, DOC, TABLE_END, TABLE_START, generated_block  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        block = generated_block(Path(tmp))
    doc = DOC.read_text()
    pattern = re.compile(re.escape(TABLE_START) + ".*?" + re.escape(TABLE_END), re.S)
    if not pattern.search(doc):
        sys.exit(f"{DOC}: no {TABLE_START} ... {TABLE_END} markers to fill.")
    storage.write_text(DOC, pattern.sub(lambda _: block, doc))
    print(f"updated {DOC.relative_to(REPO)}: {len(BAD_INPUTS)} bad inputs, the data and command-line fuzzing summaries")


if __name__ == "__main__":
    main()
