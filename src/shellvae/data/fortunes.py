"""A real English corpus that installs offline: Debian's ``fortunes`` package (``sudo apt-get install
fortunes``), about 16,000 quotations in about 40 category files under ``/usr/share/games/fortunes/``.

A category file holds records separated by a line holding only ``%``; its name is the category,
each record's label. The ``.dat`` files (``strfile`` indexes), the ``.u8`` ones (links to the same
text), symbolic links and folders (``off/``, the offensive set, where it is installed) are skipped.
A record becomes one sequence: its words and punctuation marks as separate tokens (``TOKEN``),
lowercased by default; typewriter overstrikes (``_\\b``, ``x\\bx``, used to underline and embolden)
are removed first.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from shellvae.data.base import train_test_split
from shellvae.data.sequences import EOS, N_SPECIAL, UNK, SequenceDataset, build_vocabulary, encode_lines
from shellvae.errors import DataError, ShellVAEError

#: where Debian's ``fortunes`` package puts its files
FORTUNES_PATH = "/usr/share/games/fortunes"
#: a word (with an inner apostrophe: don't, O'Brien) or one punctuation mark
TOKEN = re.compile(r"\w+(?:'\w+)?|[^\w\s]")
#: a character struck over by the next (a backspace between them): the old way to underline or embolden
OVERSTRIKE = re.compile(r".\x08")
INSTALL = "sudo apt-get install fortunes"


def fortune_files(path=FORTUNES_PATH) -> dict[str, Path]:
    """The category files of a fortunes folder, by category name (sorted): regular files other than
    ``*.dat`` / ``*.u8``; symbolic links and sub-folders are skipped."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no fortunes folder there" + (" (it is a file)" if folder.exists() else "")
                        + f". Install Debian's corpus with `{INSTALL}` (it puts about 40 category files in "
                          f"{FORTUNES_PATH}), or give path= a folder of files in its format.")
    files = {p.name: p for p in sorted(folder.iterdir())
             if not p.is_symlink() and p.is_file() and p.suffix not in (".dat", ".u8") and not p.name.startswith(".")}
    if not files:
        raise DataError(f"{folder} holds no category files (only .dat/.u8 indexes, links or folders, or nothing). "
                        f"Install the corpus with `{INSTALL}`.")
    return files


def read_records(path) -> list[str]:
    """The non-empty records of one fortunes file (text between lines holding only ``%``), overstrikes removed.
    UTF-8, or Latin-1 for the older files that are not."""
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # every byte decodes: a stray byte costs a word, not the corpus
    text = OVERSTRIKE.sub("", text.replace("\r\n", "\n"))
    records = re.split(r"^%[ \t]*$", text, flags=re.M)
    return [record.strip() for record in records if record.strip()]


def tokenize(text: str, lowercase: bool = True) -> list[str]:
    """Words and punctuation marks as separate tokens (``TOKEN``)."""
    return TOKEN.findall(text.lower() if lowercase else text)


def load_fortunes(path=FORTUNES_PATH, *, categories=None, max_words: int | None = None, min_count: int = 1,
                  max_vocab: int | None = None, test_size: float = 0.2, seed: int = 0,
                  lowercase: bool = True) -> SequenceDataset:
    """The fortunes corpus as token sequences, each record's category its label (``y_train``, ``y_test``).

    ``categories``: the category files to read (names, e.g. ``["love", "science"]``; default every
    one). ``max_words``: drop records with more tokens than this (the description says how many).
    A seeded split holds out ``test_size`` of the records (not stratified); the vocabulary comes from
    the training records only (tokens seen fewer than ``min_count`` times there, or beyond the
    ``max_vocab`` most frequent, become ``<unk>``). Each record ends with ``<eos>`` and is padded to
    the longest. ``info["categories"]`` lists the categories, the labels' order.
    """
    if min_count < 1:
        raise ShellVAEError(f"min_count={min_count}: give an integer >= 1.")
    if max_vocab is not None and max_vocab < 1:
        raise ShellVAEError(f"max_vocab={max_vocab}: give an integer >= 1 (tokens kept), or leave it out for all.")
    if max_words is not None and (isinstance(max_words, bool) or not isinstance(max_words, (int, np.integer))
                                  or max_words < 1):
        raise ShellVAEError(f"max_words={max_words!r}: give an integer >= 1 (the longest record kept, in tokens), "
                            "or leave it out to keep every record.")
    files = fortune_files(path)
    if categories is not None:
        categories = [categories] if isinstance(categories, str) else list(categories)
        unknown = [c for c in categories if c not in files]
        if unknown:
            raise DataError(f"categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))} not in "
                            f"{path}; the categories there: {', '.join(files)}.")
        if not categories:
            raise DataError(f"categories=[] selects nothing; the categories in {path}: {', '.join(files)}.")
        files = {c: files[c] for c in sorted(set(categories))}
    names = list(files)
    lines, labels, n_long = [], [], 0
    for label, name in enumerate(names):
        for record in read_records(files[name]):
            words = tokenize(record, lowercase)
            if not words:
                continue
            if max_words is not None and len(words) > max_words:
                n_long += 1
                continue
            lines.append(words)
            labels.append(label)
    if len(lines) < 2:
        raise DataError(f"{path}: the categories {', '.join(names)} hold {len(lines)} record(s)"
                        + (f" of at most max_words={max_words} tokens ({n_long} longer ones dropped)" if n_long else "")
                        + ": a train/test split needs at least 2. Choose more categories or a larger max_words.")
    labels = np.asarray(labels, dtype=np.int64)
    train, test, _, _ = train_test_split(np.arange(len(lines)), None, test_size, seed)
    train, test = np.sort(train), np.sort(test)
    vocab = build_vocabulary([lines[i] for i in train], min_count=min_count, max_size=max_vocab)
    if len(vocab) == N_SPECIAL:
        raise DataError(f"{path}: no token of the training records is seen min_count={min_count} times, so the "
                        "vocabulary is empty. Lower min_count.")
    length = max(len(words) for words in lines) + 1
    X_train = encode_lines([lines[i] for i in train], vocab, length)
    X_test = encode_lines([lines[i] for i in test], vocab, length)
    unk = float(np.mean(X_test[X_test > EOS] == UNK)) if (X_test > EOS).any() else 0.0
    description = (f"fortunes: {len(names)} categor{'y' if len(names) == 1 else 'ies'}, {len(train)} training and "
                   f"{len(test)} held-out records, {len(vocab) - N_SPECIAL} tokens (+{N_SPECIAL} special), up to "
                   f"{length - 1} tokens a record"
                   + ("" if max_words is None else f" ({n_long} record(s) longer than max_words={max_words} dropped)"))
    return SequenceDataset("fortunes", X_train, X_test, vocab, labels[train], labels[test], None, description,
                           {"path": str(path), "categories": names, "n_dropped_long": n_long, "max_words": max_words,
                            "held_out_unk_share": unk})
