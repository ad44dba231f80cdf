"""The bad inputs of issue 25 (nothing lost, nothing mixed), as cases of ``tests/test_reliability.py``'s table.

Each case is a command or call from the issue that once gave a traceback, was accepted, or lost
or mixed a run's files; each now ends in one clear error naming the problem. (The issue's cases
whose right outcome is a result, not an error, are tested in ``tests/test_issue25_results.py``.)
``cases(Case, CliExit, cli)`` takes the table's own helpers, so this module imports nothing from it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from shellvae import ShellVAE, ShellVAEError
from shellvae.errors import DataError

LONG = "x" * 300  # longer than any file system's name limit (ENAMETOOLONG)
RUN = ("--epochs", "1", "--n-clusters", "2", "--latent-dim", "2", "--quiet")


def files(c) -> Path:
    """A folder of inputs: ok.npy / other.npy (two arrays of one width), a run trained on ok.npy, text
    files, and the run's model and checkpoint with the edits the issue made."""
    d = c.tmp / "issue25"
    if d.exists():
        return d
    d.mkdir()
    np.save(d / "ok.npy", c.X)
    np.save(d / "other.npy", c.X[::-1] * 1.5)
    (d / "data.csv").write_text("1.0,2.0\n3.0,4.0\n")
    from click.testing import CliRunner
    from shellvae.cli import main

    result = CliRunner().invoke(main, ["train", "--data", str(d / "ok.npy"), *RUN, "--out", str(d / "run")])
    assert result.exit_code == 0, result.output
    lines = [f"the cat sat on mat {i % 4}" for i in range(30)]
    for name, (row, word) in {"bos.txt": (7, "<bos>"), "eos.txt": (2, "<eos>"), "ok.txt": (0, "the")}.items():
        text = list(lines)
        text[row] = text[row].replace("cat", word)
        (d / name).write_text("\n".join(text) + "\n")
    return d


def edited(c, name: str, edit, source: str = "run/model.pt") -> Path:
    """A copy of the run's model (or checkpoint) with its record edited, saved anew (valid checksums)."""
    d = files(c)
    record = torch.load(d / source, weights_only=True)
    edit(record)
    torch.save(record, d / name)
    return d / name


def flipped(c) -> Path:
    """The run's model with one byte flipped inside its largest tensor (the archive's checksums unchanged)."""
    d = files(c)
    blob = bytearray((d / "run" / "model.pt").read_bytes())
    with zipfile.ZipFile(d / "run" / "model.pt") as archive:
        record = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    start = record.header_offset + 30
    start += int.from_bytes(blob[record.header_offset + 26:record.header_offset + 28], "little")
    start += int.from_bytes(blob[record.header_offset + 28:record.header_offset + 30], "little")
    blob[start + record.file_size // 2] ^= 0x01
    (d / "flipped.pt").write_bytes(bytes(blob))
    return d / "flipped.pt"


def resume_from(c, checkpoint_edit) -> ShellVAE:
    """``fit`` resuming from a copy of the run's checkpoint, edited."""
    path = edited(c, "ckpt.pt", checkpoint_edit, source="run/checkpoint.pt")
    params = dict(method="shell", n_clusters=2, latent_dim=2, epochs=2, random_state=0)
    return ShellVAE(**params, checkpoint=str(path), resume=True, progress=False).fit(
        np.load(files(c) / "ok.npy")[:256])


def linked_to_dev_zero(c) -> ShellVAE:
    link = files(c) / "zero.pt"
    if not link.is_symlink():
        os.symlink("/dev/zero", link)
    return ShellVAE.load(link)


def cases(Case, CliExit, cli) -> list:
    def train(c, *args):
        d = files(c)
        cli("train", "--data", str(d / "ok.npy"), *RUN, *[a.replace("{D}", str(d)) for a in args])

    def run_being_written(c):
        from shellvae.cli import run_folder

        with run_folder.folder_lock(files(c) / "run"):  # as a run writing to it holds it
            train(c, "--out", "{D}/run", "--overwrite")

    def command(c, *args):
        cli(*[a.replace("{D}", str(files(c))) for a in args])

    def n_clusters(k):
        return lambda r: r["params"].update(n_clusters=k)

    def labels(value):
        return lambda r: r["geometry"].update(labels_=torch.full_like(r["geometry"]["labels_"], value))

    return [
        # run folders are owned
        Case("shellvae train", "`--resume` into a folder trained with another method (issue 25: resumed, mixed)",
             lambda c: train(c, "--method", "vanilla", "--resume", "--out", "{D}/run"), CliExit,
             "method: 'shell' in the folder's run, 'vanilla' now"),
        Case("shellvae train", "`--resume` with other data of the same width (issue 25: resumed, mixed)",
             lambda c: train(c, "--data", "{D}/other.npy", "--resume", "--out", "{D}/run"), CliExit, "the data"),
        Case("shellvae train", "`--resume` with another --lr, --sigma2 and --seed", lambda c: train(
            c, "--lr", "0.01", "--sigma2", "0.5", "--seed", "3", "--resume", "--out", "{D}/run"), CliExit,
             "params.lr"),
        Case("shellvae train", "`--out` a folder holding another run (issue 25: replaced without a word)",
             lambda c: train(c, "--out", "{D}/run"), CliExit, "--overwrite"),
        Case("shellvae train", "`--resume --overwrite`", lambda c: train(c, "--resume", "--overwrite", "--out",
                                                                       "{D}/run"), CliExit, "exclude each other"),
        Case("shellvae train", "a second run on a folder a run is writing (issue 25: both wrote, mixed)",
             run_being_written, CliExit, "another shellvae run is writing to this folder"),
        Case("shellvae summarize", "`--out RUN/model.pt` (issue 25: the model replaced by a table)", lambda c: command(
            c, "summarize", "{D}/run", "--out", "{D}/run/model.pt"), CliExit, "not replaced"),
        Case("shellvae diagnose", "`--out` a CSV of data (issue 25: overwritten)", lambda c: command(
            c, "diagnose", "--data", "{D}/ok.npy", "--out", "{D}/data.csv"), CliExit, "not replaced"),
        # model files are checked
        Case("ShellVAE.load", "one byte flipped inside a tensor (issue 25: loaded, Z moved)",
             lambda c: ShellVAE.load(flipped(c)), ShellVAEError, "fails its checksum"),
        Case("ShellVAE.load", "`n_clusters='abc'` in the file (issue 25: loaded)", lambda c: ShellVAE.load(
            edited(c, "k.pt", n_clusters("abc"))), ShellVAEError, "n_clusters"),
        Case("ShellVAE.load", "cluster labels 99 with K = 2 (issue 25: loaded)", lambda c: ShellVAE.load(
            edited(c, "labels.pt", labels(99))), ShellVAEError, "labels_"),
        Case("ShellVAE.load", "norm_min > norm_max (issue 25: loaded)", lambda c: ShellVAE.load(edited(
            c, "norms.pt", lambda r: r["shell"].update(norm_min_=5.0, norm_max_=1.0))), ShellVAEError, "norm_min_"),
        Case("ShellVAE.load", "W = NaN (issue 25: loaded)", lambda c: ShellVAE.load(edited(
            c, "w.pt", lambda r: r["geometry"].update(W_=float("nan")))), ShellVAEError, "W_"),
        Case("ShellVAE.load", "`lambda_b = -1e9` (issue 25: loaded)", lambda c: ShellVAE.load(edited(
            c, "lb.pt", lambda r: r["method"]["params"].update(lambda_b=-1e9))), ShellVAEError, "lambda_b"),
        Case("ShellVAE.load", "`encoder_hidden=[10**12]` (issue 25: out-of-memory traceback)", lambda c: ShellVAE.load(
            edited(c, "huge.pt", lambda r: r["params"].update(encoder_hidden=[10**12]))), ShellVAEError,
             "encoder_hidden"),
        Case("ShellVAE.load", "a folder (issue 25: 'no such file')", lambda c: ShellVAE.load(files(c) / "run"),
             ShellVAEError, "is a folder"),
        Case("ShellVAE.load", "a link to /dev/zero (issue 25: 'no such file')", linked_to_dev_zero, ShellVAEError,
             "not a regular file"),
        # tracebacks on user input
        Case("shellvae train", "`--device meta` (issue 25: traceback)", lambda c: train(
            c, "--device", "meta", "--out", "{D}/meta"), CliExit, "--device"),
        Case("shellvae train", "a 300-character `--out` (issue 25: ENAMETOOLONG traceback)", lambda c: train(
            c, "--out", LONG), CliExit, "--out"),
        Case("shellvae train", "a 300-character `--data` (issue 25: ENAMETOOLONG traceback)", lambda c: command(
            c, "train", "--data", LONG + ".npy", *RUN, "--out", "{D}/long"), CliExit, "--data"),
        Case("shellvae diagnose", "a 300-character `--data` (issue 25: ENAMETOOLONG traceback)", lambda c: command(
            c, "diagnose", "--data", LONG + ".npy"), CliExit, "--data"),
        Case("shellvae diagnose", "a 300-character `--out` (issue 25: ENAMETOOLONG traceback)", lambda c: command(
            c, "diagnose", "--data", "{D}/ok.npy", "--out", LONG + ".json"), CliExit, "--out"),
        Case("shellvae summarize", "a metrics.json nested 100,000 deep (issue 25: RecursionError traceback)",
             lambda c: nested(c) and command(c, "summarize", "{D}/deep"), CliExit, "RecursionError"),
        Case("shellvae show", "a metrics.json nested 100,000 deep (issue 25: RecursionError traceback)",
             lambda c: nested(c) and command(c, "show", "--model", "{D}/deep"), CliExit, "RecursionError"),
        Case("shellvae show", "an edited data_spec, `\"n_train\": \"abc\"` (issue 25: traceback)", lambda c: spec(
            c, '{"data": "synthetic", "n_train": "abc"}') and command(c, "show", "--model", "{D}/spec"), CliExit,
             "n_train"),
        Case("ShellVAE.fit", "a checkpoint with `epoch: \"2\"` (issue 25: traceback)", lambda c: resume_from(
            c, lambda r: r.update(epoch="2")), ShellVAEError, "ckpt.pt"),
        Case("ShellVAE.fit", "a checkpoint with empty `param_groups` (issue 25: traceback)", lambda c: resume_from(
            c, lambda r: r["optimizer"].update(param_groups=[])), ShellVAEError, "ckpt.pt"),
        Case("ShellVAE.fit", "a checkpoint with a 3-byte RNG state (issue 25: traceback)", lambda c: resume_from(
            c, lambda r: r.update(torch_rng=torch.zeros(3, dtype=torch.uint8))), ShellVAEError, "ckpt.pt"),
        Case("shellvae", "`--threads 100000` (issue 25: libgomp out of memory, no Error line)", lambda c: command(
            c, "--threads", "100000", "diagnose"), CliExit, "--threads"),
        # nonsense accepted
        Case("shellvae train-text", "`--max-vocab 0` (issue 25: a 0-word vocabulary, perplexity 1.5)",
             lambda c: command(c, "train-text", "--data", "{D}/ok.txt", "--epochs", "1", "--quiet", "--max-vocab",
                               "0", "--out", "{D}/text"), CliExit, "--max-vocab"),
        Case("load_text", "`max_vocab=0` (issue 25: a 0-word vocabulary, perplexity 1.5)", lambda c: load_text(
            files(c) / "ok.txt", max_vocab=0), ShellVAEError, "max_vocab"),
        Case("shellvae train-text", "`--min-count 1000000` (issue 25: a 0-word vocabulary)",
             lambda c: command(c, "train-text", "--data", "{D}/ok.txt", "--epochs", "1", "--quiet", "--min-count",
                               "1000000", "--out", "{D}/text"), CliExit, "min_count"),
        Case("load_text", "`<bos>` in a text file (issue 25: 'X row 8 holds id 2')", lambda c: load_text(
            files(c) / "bos.txt"), DataError, "bos.txt, line 8"),
        Case("load_text", "`<eos>` in the middle of a line (issue 25: accepted)", lambda c: load_text(
            files(c) / "eos.txt"), DataError, "eos.txt, line 3"),
        Case("shellvae demo", "`--n-samples 100`, once the allowed minimum (issue 25: failed after training)",
             lambda c: cli("demo", "--n-samples", "100", "--quiet"), CliExit, "--n-samples"),
        Case("shellvae reproduce", "`--seeds 1000000` (issue 25: accepted)", lambda c: command(
            c, "reproduce", "table1", "--seeds", "1000000", "--out", "{D}/rep"), CliExit, "--seeds"),
        Case("shellvae reproduce", "`--jobs 1000` (issue 25: 1000 processes on 2 cores)", lambda c: command(
            c, "reproduce", "table1", "--jobs", "1000", "--out", "{D}/rep"), CliExit, "--jobs"),
    ]


def load_text(path, **options):
    from shellvae.data.text import load_text as load

    return load(path, **options)


def nested(c) -> bool:
    d = files(c) / "deep"
    d.mkdir(exist_ok=True)
    (d / "model.pt").write_bytes((files(c) / "run" / "model.pt").read_bytes())
    (d / "metrics.json").write_text("[" * 100_000 + "]" * 100_000)
    return True


def spec(c, text: str) -> bool:
    d = files(c) / "spec"
    d.mkdir(exist_ok=True)
    (d / "model.pt").write_bytes((files(c) / "run" / "model.pt").read_bytes())
    (d / "metrics.json").write_text('{"data_spec": ' + text + "}")
    return True
