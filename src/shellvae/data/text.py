"""Where token sequences come from: a user's text file, the command line's ``--data`` (a file,
``corpus:topics`` for the generated corpus of ``sequences.py``, or ``fortunes`` for Debian's
quotations, ``fortunes.py``), and the checks every token array gets.

A text file holds one sequence a line, words separated by white space. The vocabulary comes from
the training lines only (the held-out lines' unseen words become ``<unk>``); every line ends with
``<eos>`` and is padded with ``<pad>`` to the longest (or ``max_length``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from shellvae.data.base import take_subset, train_test_split
from shellvae.errors import DataError, ShellVAEError
from shellvae.data.fortunes import FORTUNES_PATH, load_fortunes
from shellvae.data.sequences import (BOS, EOS, N_SPECIAL, PAD, SPECIALS, UNK, SequenceDataset, build_vocabulary,
                                    encode_lines, make_topic_corpus)


def check_tokens(X, name: str = "X", min_samples: int = 1) -> np.ndarray:
    """Token rows as int64 (N, T): integers >= 0, ``<pad>`` (0) only after a sequence's end, at least one
    token a row, no ``<bos>`` (2, the decoder's start symbol). Clear errors otherwise."""
    try:
        X = np.asarray(X)
    except Exception as exc:
        raise DataError(f"{name} could not be read as an array: {exc}") from None
    if X.dtype.kind not in "iu":
        if X.dtype.kind == "f" and X.size and np.isfinite(X).all() and (X == np.round(X)).all():
            X = X.astype(np.int64)
        else:
            raise DataError(f"{name} has dtype {X.dtype}; expected integer token ids of shape (n_sequences, length) "
                            "(shellvae.load_text turns a text file into them).")
    if X.ndim != 2 or X.shape[0] < min_samples or X.shape[1] == 0:
        raise DataError(f"{name} has shape {X.shape}; expected (n_sequences, length) with at least {min_samples} "
                        "sequence(s) and 1 position.")
    X = X.astype(np.int64, copy=False)
    if X.min() < 0:
        raise DataError(f"{name} holds a negative token id ({X.min()}); ids are 0 (<pad>), 1 (<unk>), 3 (<eos>) and "
                        f"{N_SPECIAL}.. (words).")
    if (X == BOS).any():
        row = int(np.argwhere(X == BOS)[0, 0])
        raise DataError(f"{name} row {row} holds id {BOS}, the reserved <bos> the decoder starts from; words start "
                        f"at id {N_SPECIAL}.")
    padded = X == PAD
    if padded[:, 0].any():
        raise DataError(f"{name} row {int(np.argmax(padded[:, 0]))} is empty (starts with <pad>): every sequence "
                        "needs at least one token.")
    inner = padded[:, :-1] & ~padded[:, 1:]
    if inner.any():
        row = int(np.argwhere(inner)[0, 0])
        raise DataError(f"{name} row {row} has a token after <pad> (id 0): padding goes after a sequence's end only.")
    return X


# -- a user's text ---------------------------------------------------------------------------------------
def read_lines(path) -> list[list[str]]:
    """The non-blank lines of a UTF-8 text file, each split on whitespace; clear errors for a missing,
    empty, binary or undecodable file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file." if not path.exists() else f"{path} is not a file.")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path} is empty: give a text file with one sequence (sentence) per line.")
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise DataError(f"{path}: byte {nul} is a NUL byte: this is not a text file (binary or damaged). Give a "
                        "UTF-8 text file with one sequence per line.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise DataError(f"{path} is not UTF-8 text: byte 0x{raw[exc.start]:02x} at position {exc.start} (line {line}) "
                        "cannot be decoded. Convert the file to UTF-8, e.g. iconv -t utf-8.") from None
    lines = [line.split() for line in text.splitlines()]
    for number, words in enumerate(lines, start=1):
        # <unk> is a word as text corpora write it (it reads as unknown); the others would mean structure
        reserved = next((w for w in words if w in SPECIALS and w != SPECIALS[UNK]), None)
        if reserved is not None:
            raise DataError(f"{path}, line {number}: {reserved!r} is one of shellvae's special tokens "
                            f"({', '.join(SPECIALS)}), which a text file cannot hold: each line is one sequence, "
                            "its end marked by the line's end. Remove or rename that token.")
    lines = [words for words in lines if words]
    if not lines:
        raise DataError(f"{path} has no sequences: every line is blank.")
    return lines


def load_text(path, *, test_size: float = 0.2, seed: int = 0, min_count: int = 1, max_vocab: int | None = None,
              max_length: int | None = None, lowercase: bool = False, n_train: int | None = None,
              n_test: int | None = None) -> SequenceDataset:
    """A text file as token sequences: one sequence per non-blank line, words split on whitespace.

    A seeded split holds out ``test_size`` of the lines; the vocabulary comes from the training lines
    only (words seen fewer than ``min_count`` times there, or beyond the ``max_vocab`` most
    frequent, become ``<unk>``, as do words seen only in the held-out lines). Each line ends with
    ``<eos>`` and is padded to the longest line (or cut to ``max_length`` words).
    """
    if min_count < 1:
        raise ShellVAEError(f"min_count={min_count}: give an integer >= 1.")
    if max_length is not None and max_length < 1:
        raise ShellVAEError(f"max_length={max_length}: give an integer >= 1 (words per sequence).")
    if max_vocab is not None and max_vocab < 1:
        raise ShellVAEError(f"max_vocab={max_vocab}: give an integer >= 1 (words kept), or leave it out for all.")
    lines = read_lines(path)
    if lowercase:
        lines = [[w.lower() for w in words] for words in lines]
    if len(lines) < 2:
        raise DataError(f"{path} has {len(lines)} non-blank line: a train/test split needs at least 2 sequences.")
    index = np.arange(len(lines))
    train, test, _, _ = train_test_split(index, None, test_size, seed)
    train, _ = take_subset(np.sort(train), None, n_train, seed, what="n_train")
    test, _ = take_subset(np.sort(test), None, n_test, seed, what="n_test")
    vocab = build_vocabulary([lines[i] for i in train], min_count=min_count, max_size=max_vocab)
    if len(vocab.tokens) == N_SPECIAL:  # every word would be <unk>: a model of nothing, with a perfect perplexity
        raise DataError(f"{path}: no word of the training lines is seen min_count={min_count} times, so the "
                        "vocabulary is empty. Lower min_count.")
    longest = max(len(lines[i]) for i in (*train, *test))
    length = (longest if max_length is None else min(longest, max_length)) + 1
    X_train = encode_lines([lines[i] for i in train], vocab, length)
    X_test = encode_lines([lines[i] for i in test], vocab, length)
    n_cut = sum(len(lines[i]) > length - 1 for i in (*train, *test))
    unk = float(np.mean(X_test[X_test > EOS] == UNK)) if (X_test > EOS).any() else 0.0
    name = Path(path).name
    description = (f"{name}: {len(train)} training and {len(test)} held-out lines, {len(vocab) - N_SPECIAL} words "
                   f"(+{N_SPECIAL} special tokens), up to {length - 1} words a line"
                   + (f" ({n_cut} lines cut)" if n_cut else ""))
    return SequenceDataset(name, X_train, X_test, vocab, description=description,
                           info={"path": str(path), "n_cut": n_cut, "held_out_unk_share": unk})


# -- data specifications (the command line's --data) --------------------------------------------------------
CORPUS_PREFIX = "corpus:"
CORPUS_OPTIONS = {"n_topics": int, "vocab_size": int, "length": int, "support": int, "concentration": float}
#: ``--data fortunes`` (Debian's folder) or ``fortunes:FOLDER`` (a folder of files in its format)
FORTUNES = "fortunes"


def is_fortunes_spec(data: str) -> bool:
    return data == FORTUNES or data.startswith(FORTUNES + ":")


def is_sequence_spec(data: str) -> bool:
    """Whether ``--data`` names token sequences: ``corpus:topics[:KEY=VALUE,...]``, ``fortunes[:FOLDER]``
    or a ``.txt`` file."""
    return data.startswith(CORPUS_PREFIX) or is_fortunes_spec(data) or Path(data).suffix.lower() == ".txt"


def parse_corpus_spec(data: str) -> dict:
    """``corpus:topics`` or ``corpus:topics:n_topics=16,vocab_size=100`` as ``make_topic_corpus`` options."""
    _, _, rest = data.partition(CORPUS_PREFIX)
    name, _, options = rest.partition(":")
    if name != "topics":
        raise ShellVAEError(f"--data {data!r}: the generated corpus is 'corpus:topics' (options: "
                            f"corpus:topics:n_topics=8,vocab_size=40,length=24,support=3).")
    parsed = {}
    for pair in filter(None, (p.strip() for p in options.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or key not in CORPUS_OPTIONS:
            raise ShellVAEError(f"--data {data!r}: {pair!r} is not KEY=VALUE with KEY one of "
                                f"{', '.join(CORPUS_OPTIONS)}.")
        try:
            parsed[key] = CORPUS_OPTIONS[key](value)
        except ValueError:
            raise ShellVAEError(f"--data {data!r}: {key}={value!r} is not a number.") from None
    return parsed


def load_sequences(data: str, *, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                   test_size: float = 0.2, **text_options) -> SequenceDataset:
    """Token sequences from a ``--data`` value: the generated corpus, the fortunes corpus (``text_options``:
    ``load_fortunes``'s) or a ``.txt`` file (``load_text``'s)."""
    if data.startswith(CORPUS_PREFIX):
        options = parse_corpus_spec(data)
        return make_topic_corpus(n_train or 10_000, n_test or 2_000, seed=seed, **options)
    if is_fortunes_spec(data):
        if "max_length" in text_options:
            raise ShellVAEError("max_length cuts lines of a text file; the fortunes corpus drops records longer "
                                "than max_words instead (--max-words).")
        dataset = load_fortunes(data.partition(":")[2] or FORTUNES_PATH, test_size=test_size, seed=seed,
                                **text_options)
        if n_train is not None or n_test is not None:
            dataset = _subset(dataset, n_train, n_test, seed)
        return dataset
    text_only = sorted({"categories", "max_words"} & set(text_options))
    if text_only:
        raise ShellVAEError(f"{', '.join(text_only)}: options of the fortunes corpus (--data fortunes), not of "
                            f"--data {data!r}.")
    if not re.search(r"\.txt$", data, flags=re.I):
        raise ShellVAEError(f"--data {data!r}: token sequences come from a .txt file, fortunes or corpus:topics.")
    return load_text(data, test_size=test_size, seed=seed, n_train=n_train, n_test=n_test, **text_options)


def _subset(dataset: SequenceDataset, n_train: int | None, n_test: int | None, seed: int) -> SequenceDataset:
    """``n_train`` / ``n_test`` seeded rows of a labelled split (the vocabulary stays the full training split's)."""
    X_train, y_train = take_subset(dataset.X_train, dataset.y_train, n_train, seed, what="n_train")
    X_test, y_test = take_subset(dataset.X_test, dataset.y_test, n_test, seed, what="n_test")
    return SequenceDataset(dataset.name, X_train, X_test, dataset.vocab, y_train, y_test, dataset.corpus,
                           f"{dataset.description}; using {len(X_train)} training and {len(X_test)} held-out rows",
                           dataset.info)
