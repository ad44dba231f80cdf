"""Reliability: bad input at every public entry point, numerical faults, atomic files, safe model files.

``BAD_INPUTS`` is the one list of bad inputs: each case is run here, and
``docs/make_reliability_table.py`` renders the exact error of each into docs/reliability.md
(``test_reliability_doc_is_in_sync`` fails when the doc is stale).
"""

from __future__ import annotations

import ast
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.sparse
import torch
from click.testing import CliRunner
from torch import nn

import shellvae
from shellvae import ClusterGeometry, NonFiniteError, ShellVAE, ShellVAEError, certify_model, make_gmm

from shellvae.base import storage
from shellvae.evaluation.certificate import certify
from shellvae.cli import main
from shellvae.data.arrays import load_array
from shellvae.errors import DataError
from shellvae.training.methods import Vanilla
from tests import reliability_issue25

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "reliability.md"
TABLE_START, TABLE_END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"

#: a tiny, fast model: every bad-input case costs milliseconds
FAST = dict(method="vanilla", n_clusters=8, epochs=1, latent_dim=2, encoder_hidden=(16,), decoder_hidden=(16,))


# --------------------------------------------------------------------------- the cases
@dataclass
class Ctx:
    """What the cases run against: a temp folder, training data (320 x 8) and a fitted, saved model."""

    tmp: Path
    X: np.ndarray
    fitted: ShellVAE
    model_file: Path


def make_ctx(tmp: Path) -> Ctx:
    X = make_gmm(400, n_features=8, seed=0).X_train
    fitted = ShellVAE(**FAST).fit(X)
    fitted.save(tmp / "model.pt")
    return Ctx(tmp, X, fitted, tmp / "model.pt")


class CliExit(Exception):
    """A CLI run that failed cleanly: ``code`` is its exit status, the message its last output line."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def cli(*args: str) -> None:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    if result.exit_code:
        raise CliExit(result.exit_code, result.output.strip().splitlines()[-1])


@dataclass
class Case:
    entry: str  # the public entry point
    what: str  # the bad input
    run: Callable[[Ctx], object]
    error: type  # the exception expected (a ShellVAEError, or CliExit for the command line)
    names: str  # the message must name this (the parameter, file or term)


def fit(X_of=lambda c: c.X, X_val=None, **params) -> Callable[[Ctx], object]:
    return lambda c: ShellVAE(**{**FAST, **params}).fit(X_of(c), X_val=None if X_val is None else X_val(c))


def saved_map(c: Ctx, X: np.ndarray) -> np.memmap:
    """X saved as .npy in the case's folder, memory-mapped back."""
    np.save(c.tmp / "mapped.npy", X)
    return np.load(c.tmp / "mapped.npy", mmap_mode="r")


def with_value(value, row=3, col=2):
    def make(c):
        X = c.X.copy()
        X[row, col] = value
        return X
    return make


def edited_model(c: Ctx, edit, name: str) -> ShellVAE:
    """Load a copy of the saved model whose record ``edit`` changed (a tampered file)."""
    record = torch.load(c.model_file, weights_only=True)
    edit(record)
    torch.save(record, c.tmp / name)
    return ShellVAE.load(c.tmp / name)


def truncated_model(c: Ctx) -> ShellVAE:
    blob = c.model_file.read_bytes()
    (c.tmp / "truncated.pt").write_bytes(blob[: len(blob) // 2])
    return ShellVAE.load(c.tmp / "truncated.pt")


class Exploit:
    """Unpickling this runs code (it creates the file ``marker``): what weights_only loading must refuse."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def malicious_model(c: Ctx) -> ShellVAE:
    marker = c.tmp / "exploit-ran"
    torch.save({"format": "shellvae", "version": 1, "kind": "model", "params": Exploit(marker)}, c.tmp / "evil.pt")
    try:
        return ShellVAE.load(c.tmp / "evil.pt")
    finally:
        assert not marker.exists(), "loading a model file executed code"


def resume_other_architecture(c: Ctx):
    ckpt = c.tmp / "ckpt.pt"
    ShellVAE(**FAST, checkpoint=str(ckpt)).fit(c.X)
    return ShellVAE(**{**FAST, "latent_dim": 3}, checkpoint=str(ckpt), resume=True).fit(c.X)


def object_with_text(c: Ctx) -> np.ndarray:
    X = c.X.astype(object)
    X[3, 2] = "x"
    return X


def own_networks(encoder_out=4, decoder=None) -> dict:
    """Your own encoder and decoder for the 8-feature data and latent_dim=2 (FAST)."""
    return dict(encoder=nn.Linear(8, encoder_out), decoder=nn.Linear(2, 8) if decoder is None else decoder)


def saved_custom_model(c: Ctx) -> Path:
    ShellVAE(**FAST, **own_networks()).fit(c.X).save(c.tmp / "custom.pt")
    return c.tmp / "custom.pt"


def certify_other(c: Ctx, **kwargs):
    m = c.fitted.model_
    args = {"shell": c.fitted.shell_, "geometry": c.fitted.geometry_, **kwargs}
    return certify_model(args.pop("encode", m.encode), args.pop("decode", m.decode), c.X, **args)


def saved_array(name: str, array) -> Callable[[Ctx], object]:
    def run(c):
        np.save(c.tmp / name, array)
        return load_array(c.tmp / name)
    return run


def write_csv(c: Ctx) -> object:
    (c.tmp / "typo.csv").write_text("a,b\n1.0,2.0\n3.0,x\n")
    return load_array(c.tmp / "typo.csv")


CLI_TRAIN = ("train", "--n-train", "300", "--n-test", "100", "--epochs", "1", "--quiet")


def cli_files(c: Ctx) -> Path:
    """A folder of CLI inputs: X.npy (not an array: a command that read it would fail on it, so these
    cases show the command line is checked first), a regular file, a run folder with a damaged
    metrics.json, one with a list in it, and one whose model is of non-image data."""
    d = c.tmp / "cli-inputs"
    if not d.exists():
        d.mkdir()
        (d / "X.npy").write_bytes(b"not an array")
        (d / "afile").write_text("a regular file\n")
        for name, metrics in [("damaged", "{bad"), ("list", "[1, 2]"),
                              ("run", '{"data_spec": {"data": "synthetic", "n_train": 300}}')]:
            (d / name).mkdir()
            (d / name / "model.pt").write_bytes(c.model_file.read_bytes())
            (d / name / "metrics.json").write_text(metrics)
        (d / "taken" / "model.pt").mkdir(parents=True)
    return d


def issue_train(c: Ctx, *args: str) -> None:
    """The issue's command line: ``shellvae train --data X.npy ... ARGS``."""
    d = cli_files(c)
    cli("train", "--data", str(d / "X.npy"), "--n-clusters", "auto", "--quiet", "--out", str(c.tmp / "cli"), *args)


def cli_in(c: Ctx, *args: str) -> None:
    """``cli`` with {D} standing for the folder of CLI inputs and {OUT} for a fresh output folder."""
    d = cli_files(c)
    cli(*(a.replace("{D}", str(d)).replace("{OUT}", str(c.tmp / "cli")) for a in args))


BAD_INPUTS = [
    # data given to ShellVAE.fit (the same check_array guards every entry point and loader)
    Case("ShellVAE.fit", "NaN in X", fit(with_value(np.nan)), DataError, "X"),
    Case("ShellVAE.fit", "inf in X", fit(with_value(np.inf)), DataError, "X"),
    Case("ShellVAE.fit", "1-D X", fit(lambda c: c.X[:, 0]), DataError, "X"),
    Case("ShellVAE.fit", "3-D X (images not flattened)", fit(lambda c: c.X.reshape(-1, 2, 4)), DataError, "X"),
    Case("ShellVAE.fit", "complex X", fit(lambda c: c.X.astype(np.complex64)), DataError, "X"),
    Case("ShellVAE.fit", "object array with a text cell", fit(object_with_text), DataError, "X"),
    Case("ShellVAE.fit", "sparse X", fit(lambda c: scipy.sparse.csr_matrix(c.X)), DataError, "sparse"),
    Case("ShellVAE.fit", "string array", fit(lambda c: c.X.astype(str)), DataError, "X"),
    Case("ShellVAE.fit", "ragged list", fit(lambda c: [[1.0, 2.0], [3.0]]), DataError, "X"),
    Case("ShellVAE.fit", "empty X, shape (0, 8)", fit(lambda c: c.X[:0]), DataError, "X"),
    Case("ShellVAE.fit", "no features, shape (320, 0)", fit(lambda c: c.X[:, :0]), DataError, "X"),
    Case("ShellVAE.fit", "1 sample", fit(lambda c: c.X[:1]), DataError, "X"),
    Case("ShellVAE.fit", "constant X", fit(lambda c: np.ones((50, 8))), DataError, "constant"),
    Case("ShellVAE.fit", "near-constant X: float32 1e6 + 0.05 * noise", fit(
        lambda c: (1e6 + 0.05 * c.X).astype(np.float32)), DataError, "rounding"),
    Case("ShellVAE.fit", "values whose squares overflow (1e200)", fit(lambda c: 1e200 * c.X.astype(float)),
         ShellVAEError, "Rescale"),
    Case("ShellVAE.fit", "3 distinct rows, n_clusters=8", fit(lambda c: np.repeat(c.X[:3], 40, axis=0)),
         DataError, "n_clusters=8"),
    Case("ShellVAE.fit", "X_val with another width", fit(X_val=lambda c: c.X[:, :5]), DataError, "X_val"),
    Case("ShellVAE.fit", "NaN in a memory-mapped X", lambda c: ShellVAE(**FAST).fit(
        saved_map(c, with_value(np.nan, row=300)(c))), DataError, "row 300"),
    Case("ShellVAE.fit", "geometry= not a ClusterGeometry", lambda c: ShellVAE(**FAST).fit(c.X, geometry="kmeans"),
         ShellVAEError, "geometry"),
    Case("ShellVAE.fit", "geometry fitted on other rows", lambda c: ShellVAE(**FAST).fit(
        c.X, geometry=ClusterGeometry(8).fit(c.X[:100])), ShellVAEError, "row for row"),
    Case("ShellVAE.fit", "geometry with another n_clusters", lambda c: ShellVAE(**FAST).fit(
        c.X, geometry=ClusterGeometry(4)), ShellVAEError, "n_clusters"),
    Case("ShellVAE.fit", "compile='fast'", fit(compile="fast"), ShellVAEError, "compile"),
    Case("ClusterGeometry.fit", "kmeans='gpu'", lambda c: ClusterGeometry(8, kmeans="gpu").fit(c.X),
         ShellVAEError, "kmeans"),
    Case("ClusterGeometry.fit", "chunk_rows=0 (streaming)", lambda c: ClusterGeometry(
        8, kmeans="streaming", chunk_rows=0).fit(c.X), ShellVAEError, "chunk_rows"),
    Case("ShellVAE.fit", "NaN in X_val", fit(X_val=with_value(np.nan)), DataError, "X_val"),
    # hyperparameters
    Case("ShellVAE.fit", "n_clusters=1", fit(n_clusters=1), ShellVAEError, "n_clusters"),
    Case("ShellVAE.fit", "n_clusters > n_samples", fit(n_clusters=1000), ShellVAEError, "n_clusters"),
    Case("ShellVAE.fit", "n_clusters=2.5 (float)", fit(n_clusters=2.5), ShellVAEError, "n_clusters"),
    Case("ShellVAE.fit", "n_clusters='8' (str)", fit(n_clusters="8"), ShellVAEError, "n_clusters"),
    Case("ShellVAE.fit", "r_min >= r_max", fit(r_min=1.2, r_max=1.1), ShellVAEError, "r_min"),
    Case("ShellVAE.fit", "r_min=0", fit(r_min=0.0), ShellVAEError, "r_min"),
    Case("ShellVAE.fit", "r_max=-1", fit(r_max=-1.0), ShellVAEError, "r_max"),
    Case("ShellVAE.fit", "r_min='a'", fit(r_min="a"), ShellVAEError, "r_min"),
    Case("ShellVAE.fit", "sigma2=0", fit(sigma2=0.0), ShellVAEError, "sigma2"),
    Case("ShellVAE.fit", "sigma2=-1", fit(sigma2=-1.0), ShellVAEError, "sigma2"),
    Case("ShellVAE.fit", "sigma2_ratio=0", fit(sigma2_ratio=0), ShellVAEError, "sigma2_ratio"),
    Case("ShellVAE.fit", "beta=-0.5", fit(beta=-0.5), ShellVAEError, "beta"),
    Case("ShellVAE.fit", "beta=nan", fit(beta=float("nan")), ShellVAEError, "beta"),
    Case("ShellVAE.fit", "latent_dim=0", fit(latent_dim=0), ShellVAEError, "latent_dim"),
    Case("ShellVAE.fit", "latent_dim=2.0 (float)", fit(latent_dim=2.0), ShellVAEError, "latent_dim"),
    Case("ShellVAE.fit", "epochs=0", fit(epochs=0), ShellVAEError, "epochs"),
    Case("ShellVAE.fit", "batch_size=True", fit(batch_size=True), ShellVAEError, "batch_size"),
    Case("ShellVAE.fit", "lr=inf", fit(lr=float("inf")), ShellVAEError, "lr"),
    Case("ShellVAE.fit", "random_state=-1", fit(random_state=-1), ShellVAEError, "random_state"),
    Case("ShellVAE.fit", "device='gpu0'", fit(device="gpu0"), ShellVAEError, "device"),
    Case("ShellVAE.fit", "unknown method", fit(method="nonsense"), ShellVAEError, "nonsense"),
    Case("ShellVAE.fit", "unknown method parameter", fit(method="shell", method_params={"lambda_q": 1}),
         ShellVAEError, "lambda_q"),
    Case("ShellVAE.fit", "method_params not a dict", fit(method_params=[1]), ShellVAEError, "method_params"),
    Case("ShellVAE.fit", "encoder_hidden=(0,)", fit(encoder_hidden=(0,)), ShellVAEError, "encoder_hidden"),
    Case("ShellVAE.fit", "arch='transformer' (not registered)", fit(arch="transformer"), ShellVAEError, "arch"),
    # your own networks (docs/custom_models.md)
    Case("ShellVAE.fit", "encoder= without decoder=", fit(encoder=nn.Linear(8, 4)), ShellVAEError, "decoder="),
    Case("ShellVAE.fit", "encoder= not a torch module", fit(encoder=lambda x: x, decoder=nn.Linear(2, 8)),
         ShellVAEError, "nn.Module"),
    Case("ShellVAE.fit", "encoder giving 3 values, latent_dim=2", fit(**own_networks(encoder_out=3)), ShellVAEError,
         "(8, 4)"),
    Case("ShellVAE.fit", "decoder giving (B, 2, 4) images", fit(**own_networks(
        decoder=nn.Sequential(nn.Linear(2, 8), nn.Unflatten(1, (2, 4))))), ShellVAEError, "nn.Flatten()"),
    Case("ShellVAE.fit", "encoder for 5 features, X has 8", fit(encoder=nn.Linear(5, 4), decoder=nn.Linear(2, 8)),
         ShellVAEError, "encoder (Linear) failed"),
    Case("ShellVAE.fit", "resume=True without checkpoint", fit(resume=True), ShellVAEError, "checkpoint"),
    Case("ShellVAE.fit", "checkpoint is a folder", lambda c: fit(checkpoint=str(c.tmp))(c), ShellVAEError,
         "checkpoint"),
    Case("ShellVAE.fit", "resume from another architecture's checkpoint", resume_other_architecture,
         ShellVAEError, "checkpoint"),
    # numerical faults during training
    Case("ShellVAE.fit", "sigma2=1e-300 (loss overflows)", fit(sigma2=1e-300), NonFiniteError, "epoch 1"),
    # a fitted model
    Case("ShellVAE.transform", "X with another width", lambda c: c.fitted.transform(c.X[:, :5]), DataError, "X"),
    Case("ShellVAE.transform", "NaN in X", lambda c: c.fitted.transform(with_value(np.nan)(c)), DataError, "X"),
    Case("ShellVAE.transform", "before fit", lambda c: ShellVAE().transform(c.X), ShellVAEError, "fit"),
    Case("ShellVAE.inverse_transform", "Z with another width than latent_dim",
         lambda c: c.fitted.inverse_transform(np.zeros((3, 5))), DataError, "latent_dim"),
    Case("ShellVAE.sample", "n=0", lambda c: c.fitted.sample(0), ShellVAEError, "n=0"),
    Case("ShellVAE.certify", "eps=-1", lambda c: c.fitted.certify(c.X, eps=-1.0), ShellVAEError, "eps"),
    Case("certify", "eps=-0.1 (would pass a constant decoder)",
         lambda c: certify(c.fitted.evaluate(c.X), c.fitted.region_, eps=-0.1), ShellVAEError, "eps"),
    # model files
    Case("ShellVAE.load", "missing file", lambda c: ShellVAE.load(c.tmp / "missing.pt"), ShellVAEError, "missing.pt"),
    Case("ShellVAE.load", "not a torch file", lambda c: (c.tmp / "junk.pt").write_bytes(b"junk") and ShellVAE.load(
        c.tmp / "junk.pt"), ShellVAEError, "junk.pt"),
    Case("ShellVAE.load", "truncated model.pt", truncated_model, ShellVAEError, "truncated.pt"),
    Case("ShellVAE.load", "pickle with a malicious global (exec)", malicious_model, ShellVAEError, "refused"),
    Case("ShellVAE.load", "file format version 999", lambda c: edited_model(
        c, lambda r: r.update(version=999), "v999.pt"), ShellVAEError, "version 999"),
    Case("ShellVAE.load", "a torch file of another program", lambda c: torch.save({"w": torch.zeros(2)}, c.tmp / "o.pt")
         or ShellVAE.load(c.tmp / "o.pt"), ShellVAEError, "o.pt"),
    Case("ShellVAE.load", "a checkpoint instead of a model", lambda c: edited_model(
        c, lambda r: r.update(kind="checkpoint"), "kind.pt"), ShellVAEError, "checkpoint"),
    Case("ShellVAE.load", "weights of the wrong shape", lambda c: edited_model(
        c, lambda r: r["model"].update({"encoder.0.weight": torch.zeros(3, 3)}), "shape.pt"), ShellVAEError,
         "shape.pt"),
    Case("ShellVAE.load", "shell mean of the wrong length", lambda c: edited_model(
        c, lambda r: r["shell"].update(mean_=torch.zeros(3)), "shell.pt"), ShellVAEError, "shell.pt"),
    Case("ShellVAE.load", "a field removed", lambda c: edited_model(c, lambda r: r.pop("fitted"), "field.pt"),
         ShellVAEError, "field.pt"),
    Case("ShellVAE.load", "your own networks, not passed again", lambda c: ShellVAE.load(saved_custom_model(c)),
         ShellVAEError, "encoder=..."),
    Case("ShellVAE.load", "your own networks, of other sizes", lambda c: ShellVAE.load(
        saved_custom_model(c), **own_networks(encoder_out=6)), ShellVAEError, "encoder.weight saved (4, 8), built (6, 8)"),
    Case("ShellVAE.load", "encoder= for a model of arch='mlp'", lambda c: ShellVAE.load(
        c.model_file, **own_networks()), ShellVAEError, "arch='mlp'"),
    # certifying a VAE shellvae did not train
    Case("certify_model", "space='latent'", lambda c: certify_other(c, space="latent"), ShellVAEError, "space"),
    Case("certify_model", "decode giving 5 features, X has 8", lambda c: certify_other(
        c, decode=lambda z: torch.zeros(len(z), 5)), ShellVAEError, "decode returned (8, 5)"),
    Case("certify_model", "shell not fitted", lambda c: certify_other(c, shell=c.fitted.shell_.__class__()),
         ShellVAEError, "shell="),
    # loaders (600 damaged files more in tests/test_data_fuzz.py)
    Case("load_array", ".npy of complex numbers", saved_array("c.npy", np.ones((4, 2), complex)), DataError, "c.npy"),
    Case("load_array", ".csv with a text cell", write_csv, DataError, "typo.csv"),
    # the command line
    Case("shellvae train", "--n-clusters many", lambda c: cli(*CLI_TRAIN, "--n-clusters", "many", "--out",
                                                              str(c.tmp / "cli")), CliExit, "--n-clusters"),
    Case("shellvae train", "--n-train 0", lambda c: cli(*CLI_TRAIN, "--n-train", "0", "--out", str(c.tmp / "cli")),
         CliExit, "--n-train"),
    Case("shellvae train", "--seed -1", lambda c: cli(*CLI_TRAIN, "--seed", "-1", "--out", str(c.tmp / "cli")),
         CliExit, "--seed"),
    Case("shellvae train", "--test-size 1.5", lambda c: cli(*CLI_TRAIN, "--test-size", "1.5", "--out",
                                                            str(c.tmp / "cli")), CliExit, "--test-size"),
    Case("shellvae train", "--epochs 0", lambda c: cli(*CLI_TRAIN, "--epochs", "0", "--out", str(c.tmp / "cli")),
         CliExit, "epochs"),
    Case("shellvae train", "--device gpu0", lambda c: cli(*CLI_TRAIN, "--device", "gpu0", "--out", str(c.tmp / "cli")),
         CliExit, "device"),
    Case("shellvae train", "--data missing.npy", lambda c: cli(*CLI_TRAIN, "--data", str(c.tmp / "missing.npy"),
                                                               "--out", str(c.tmp / "cli")), CliExit, "missing.npy"),
    Case("shellvae diagnose", "--k-grid 1,2", lambda c: cli("diagnose", "--k-grid", "1,2"), CliExit, "--k-grid"),
    Case("shellvae diagnose", "--max-samples 0", lambda c: cli("diagnose", "--max-samples", "0"), CliExit,
         "--max-samples"),
    Case("shellvae demo", "--epochs 0", lambda c: cli("demo", "--epochs", "0", "--n-samples", "500", "--quiet"),
         CliExit, "epochs"),
    Case("shellvae show", "a folder without model.pt", lambda c: (c.tmp / "empty").mkdir(exist_ok=True) or cli(
        "show", "--model", str(c.tmp / "empty")), CliExit, "model.pt"),
    # the command line checks everything it can before reading data (issue 15; tests/test_cli_fuzz.py fuzzes it)
    Case("shellvae train", "`-p lambda_b=abc` (issue 15: was a TypeError at the first step)", lambda c: issue_train(
        c, "-p", "lambda_b=abc"), CliExit, "lambda_b"),
    Case("shellvae train", "`--out afile/sub`, under a regular file (issue 15: was NotADirectoryError after K-means)",
         lambda c: issue_train(c, "--out", str(cli_files(c) / "afile" / "sub")), CliExit, "afile"),
    Case("shellvae train", "`-p lambda_b=-5`", lambda c: issue_train(c, "-p", "lambda_b=-5"), CliExit, "lambda_b"),
    Case("shellvae train", "`--method free_bits -p free_bits=nan`", lambda c: issue_train(
        c, "--method", "free_bits", "-p", "free_bits=nan"), CliExit, "free_bits"),
    Case("shellvae train", "`--method shell_lagrange -p alpha=2x`", lambda c: issue_train(
        c, "--method", "shell_lagrange", "-p", "alpha=2x"), CliExit, "alpha"),
    Case("shellvae train", "`-p lambda_q=1`, an unknown key", lambda c: issue_train(c, "-p", "lambda_q=1"), CliExit,
         "lambda_q"),
    Case("shellvae train", "`--method cyclical -p n_cycles=2.5`", lambda c: issue_train(
        c, "--method", "cyclical", "-p", "n_cycles=2.5"), CliExit, "n_cycles"),
    Case("shellvae train", "`-p lambda_b=5 -p lambda_b=6`", lambda c: issue_train(
        c, "-p", "lambda_b=5", "-p", "lambda_b=6"), CliExit, "twice"),
    Case("shellvae train", "`-p lambda_b`, no value", lambda c: issue_train(c, "-p", "lambda_b"), CliExit, "-p"),
    Case("shellvae train", "`--beta nan`", lambda c: issue_train(c, "--beta", "nan"), CliExit, "--beta"),
    Case("shellvae train", "`--lr inf`", lambda c: issue_train(c, "--lr", "inf"), CliExit, "--lr"),
    Case("shellvae train", "`--latent-dim 0`", lambda c: issue_train(c, "--latent-dim", "0"), CliExit, "--latent-dim"),
    Case("shellvae train", "`--n-clusters 1`", lambda c: issue_train(c, "--n-clusters", "1"), CliExit, "--n-clusters"),
    Case("shellvae train", "`--certificate-margin 2`", lambda c: issue_train(c, "--certificate-margin", "2"), CliExit,
         "--certificate-margin"),
    Case("shellvae train", "`--sigma2 1 --sigma2-ratio 2`", lambda c: issue_train(
        c, "--sigma2", "1", "--sigma2-ratio", "2"), CliExit, "--sigma2"),
    Case("shellvae train", "`--device cuda:99`", lambda c: issue_train(c, "--device", "cuda:99"), CliExit, "--device"),
    Case("shellvae train", "`--data-dir` a missing folder", lambda c: issue_train(
        c, "--data-dir", str(c.tmp / "nowhere")), CliExit, "--data-dir"),
    Case("shellvae train", "`--out ''`", lambda c: issue_train(c, "--out", ""), CliExit, "--out"),
    Case("shellvae train", "`--out /proc/...`, a folder that cannot be made", lambda c: issue_train(
        c, "--out", "/proc/shellvae/run"), CliExit, "/proc/shellvae/run"),
    Case("shellvae train", "`--out` holding a folder named model.pt", lambda c: issue_train(
        c, "--out", str(cli_files(c) / "taken")), CliExit, "model.pt"),
    Case("shellvae train", "`--n-clusters 1000` for 300 samples (known once the data is read)", lambda c: cli(
        *CLI_TRAIN, "--n-clusters", "1000", "--out", str(c.tmp / "cli")), CliExit, "--n-clusters"),
    Case("shellvae train", "`--arch conv` on non-image data (known once the data is read)", lambda c: cli(
        *CLI_TRAIN, "--arch", "conv", "--out", str(c.tmp / "cli")), CliExit, "--arch conv"),
    Case("shellvae diagnose", "`--sigma2-ratio nan`", lambda c: cli_in(c, "diagnose", "--data", "{D}/X.npy",
                                                                          "--sigma2-ratio", "nan"),
         CliExit, "--sigma2-ratio"),
    Case("shellvae diagnose", "`--out` under a regular file", lambda c: cli_in(
        c, "diagnose", "--data", "{D}/X.npy", "--out", "{D}/afile/diagnosis.json"), CliExit, "afile"),
    Case("shellvae diagnose", "`--out` the --data file", lambda c: cli_in(
        c, "diagnose", "--data", "{D}/X.npy", "--out", "{D}/X.npy"), CliExit, "--out"),
    Case("shellvae demo", "`--sigma2-ratio -1`", lambda c: cli("demo", "--sigma2-ratio", "-1"), CliExit,
         "--sigma2-ratio"),
    Case("shellvae show", "a model of non-image data", lambda c: cli_in(c, "show", "--model", "{D}/run"), CliExit,
         "not image data"),
    Case("shellvae show", "a damaged metrics.json", lambda c: cli_in(c, "show", "--model", "{D}/damaged"), CliExit,
         "metrics.json"),
    Case("shellvae summarize", "a metrics.json holding a list", lambda c: cli_in(c, "summarize", "{D}/list"), CliExit,
         "metrics.json"),
    Case("shellvae summarize", "`--out` a run's own metrics.json", lambda c: cli_in(
        c, "summarize", "{D}/run", "--out", "{D}/run/metrics.json"), CliExit, "--out"),
    Case("shellvae reproduce", "an unknown experiment", lambda c: cli_in(c, "reproduce", "table3", "--out", "{OUT}"),
         CliExit, "EXPERIMENT"),
    Case("shellvae reproduce", "`--certificate-margin nan` (was accepted, and trained)", lambda c: cli_in(
        c, "reproduce", "table1", "--certificate-margin", "nan", "--out", "{OUT}"), CliExit, "--certificate-margin"),
    Case("shellvae reproduce", "`--datasets ,`", lambda c: cli_in(c, "reproduce", "table1", "--datasets", ",", "--out",
                                                                  "{OUT}"), CliExit, "--datasets"),
    Case("shellvae reproduce", "`--data-dir mnist=` a missing folder", lambda c: cli_in(
        c, "reproduce", "table1", "--data-dir", f"mnist={c.tmp / 'nowhere'}", "--out", "{OUT}"), CliExit, "--data-dir"),
    Case("shellvae reproduce", "`--seeds 0`", lambda c: cli_in(c, "reproduce", "table1", "--seeds", "0", "--out",
                                                               "{OUT}"), CliExit, "--seeds"),
    Case("shellvae reproduce", "`--out` under a regular file", lambda c: cli_in(
        c, "reproduce", "table1", "--out", "{D}/afile/results"), CliExit, "afile"),
    Case("shellvae reproduce", "`--address` without `--executor ray`", lambda c: cli_in(
        c, "reproduce", "table1", "--address", "auto", "--out", "{OUT}"), CliExit, "--address"),
    # which method for my data (issue 28): refused before the data is read (X.npy here is not an array)
    Case("shellvae.recommend", "labels of another length than X", lambda c: shellvae.recommend(
        c.X, np.zeros(3, dtype=int), methods=["vanilla"], epochs=1, progress=False), DataError, "labels"),
    Case("shellvae.recommend", "an unknown method", lambda c: shellvae.recommend(
        c.X, methods=["vanilla", "nosuch"], epochs=1, progress=False), ShellVAEError, "nosuch"),
    Case("shellvae recommend", "`--data` a missing file", lambda c: cli_in(
        c, "recommend", "--data", "{D}/missing.npy", "--out", "{OUT}"), CliExit, "missing.npy"),
    Case("shellvae recommend", "`--methods vanilla,nosuch`", lambda c: cli_in(
        c, "recommend", "--data", "{D}/X.npy", "--methods", "vanilla,nosuch", "--out", "{OUT}"), CliExit, "--methods"),
    Case("shellvae recommend", "`--address` without `--executor ray`", lambda c: cli_in(
        c, "recommend", "--data", "{D}/X.npy", "--address", "auto", "--out", "{OUT}"), CliExit, "--address"),
    Case("shellvae recommend", "`--seeds 0`", lambda c: cli_in(
        c, "recommend", "--data", "{D}/X.npy", "--seeds", "0", "--out", "{OUT}"), CliExit, "--seeds"),
]
BAD_INPUTS += reliability_issue25.cases(Case, CliExit, cli)  # issue 25: nothing lost, nothing mixed


def run_case(case: Case, ctx: Ctx) -> BaseException:
    """Run a case; return the error it raised (after checking its type and what it names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. an empty feasible region on the way to the error
        with pytest.raises(case.error) as info:
            case.run(ctx)
    message = str(info.value)
    assert case.names in message, f"{case.what}: the message does not name {case.names!r}: {message}"
    if case.error is not CliExit:
        assert isinstance(info.value, ShellVAEError), f"{case.what}: {type(info.value).__name__} is not ours"
    return info.value


def fuzz_summary(tmp: Path) -> str:
    """Run tests/test_data_fuzz.py's 600 cases, counting outcomes (the run fails on any crash or hang)."""
    from tests import test_data_fuzz as fuzz

    counts, original = {"loaded": 0, "refused": 0}, fuzz.load

    def counted(*args):
        try:
            out = original(*args)
        except DataError:
            counts["refused"] += 1
            raise
        counts["loaded"] += 1
        return out

    fuzz.load = counted
    try:
        fuzz.test_fuzz_600_damaged_files_give_result_or_data_error(tmp)
    finally:
        fuzz.load = original
    return (f"Fuzzing (`tests/test_data_fuzz.py`, seeded): {fuzz.N_CASES} damaged files, 100 each of raw IDX, gzipped "
            f"IDX, .npy, .npz, .csv and CIFAR pickle: {counts['loaded']} still loaded as valid data, "
            f"{counts['refused']} refused with a `DataError` naming the file, 0 crashed, 0 ran past "
            f"{fuzz.TIME_LIMIT_S:g} s.")


def cli_fuzz_summary() -> str:
    """tests/test_cli_fuzz.py's case counts (its tests check that exactly these many run)."""
    from tests import test_cli_fuzz as fuzz

    per_command = ", ".join(f"{n} {c}" for c, n in fuzz.EXAMPLES.items() if c != "global")
    return (f"Command-line fuzzing (`tests/test_cli_fuzz.py`, hypothesis, seeded): {fuzz.N_CASES} bad command lines "
            f"({per_command}, {fuzz.EXAMPLES['global']} with bad global options), each a valid command line with one "
            "or two mutations; every one ends with exit 1 or 2 and one `Error:` line naming the problem, no traceback, "
            f"no output folder left behind, in under {fuzz.TIME_LIMIT_S:g} s, and none reaches training (nor, when the "
            "command line shows the problem, the data).")


def generated_block(tmp: Path) -> str:
    """What docs/reliability.md holds between its markers."""
    (tmp / "cases").mkdir()
    (tmp / "fuzz").mkdir()
    return (f"{TABLE_START}\n{bad_input_table(make_ctx(tmp / 'cases'))}\n\n{fuzz_summary(tmp / 'fuzz')}\n\n"
            f"{cli_fuzz_summary()}\n{TABLE_END}")


def bad_input_table(ctx: Ctx) -> str:
    """The Markdown table of docs/reliability.md: every case with the exact error it gets."""
    lines = ["| entry point | bad input | error | message |", "|---|---|---|---|"]
    for case in BAD_INPUTS:
        exc = run_case(case, ctx)
        kind = f"exit {exc.code}" if isinstance(exc, CliExit) else type(exc).__name__
        message = " ".join(str(exc).replace(str(ctx.tmp), "<tmp>").replace("|", "\\|").split())
        message = re.sub(r"available: [^.]*\.", "available: <registered methods>.", message)  # grows with plug-ins
        lines.append(f"| `{case.entry}` | {case.what} | {kind} | {message} |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return make_ctx(tmp_path_factory.mktemp("reliability"))


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[f"{c.entry}: {c.what}" for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(case, ctx):
    run_case(case, ctx)


def test_reliability_doc_is_in_sync(tmp_path):
    """docs/reliability.md shows the errors the code gives today (regenerate: python docs/make_reliability_table.py)."""
    assert generated_block(tmp_path) in DOC.read_text(), "stale: run python docs/make_reliability_table.py"


# --------------------------------------------------------------------------- data decisions
def test_integer_and_bool_data_are_converted(ctx):
    ints = np.round(10 * ctx.X).astype(np.int64)
    a = ShellVAE(**FAST).fit(ints)
    b = ShellVAE(**FAST).fit(ints.astype(np.float64))
    np.testing.assert_array_equal(a.transform(ints), b.transform(ints))
    with pytest.warns(UserWarning, match="distinct rows"):  # 8 binary features: at most 256 distinct rows
        ShellVAE(**FAST).fit(ctx.X > 0)


def test_duplicates_are_kept_with_a_warning_when_they_dominate(ctx):
    X = np.repeat(ctx.X[:40], 3, axis=0)  # 120 rows, 40 distinct: two thirds are repeats
    with pytest.warns(UserWarning, match="only 40 distinct rows"):
        est = ShellVAE(**FAST).fit(X)
    assert len(est.geometry_.labels_) == 120
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a few duplicates: no warning
        ShellVAE(**{**FAST, "n_clusters": 8}).fit(np.vstack([ctx.X, ctx.X[:10]]))


def test_float64_data_keeps_its_precision(ctx):
    """The shell centres in float64: a large offset does not eat a small, real spread."""
    X = 1e6 + 1e-3 * ctx.X.astype(np.float64)  # float32 would round this to a constant
    Xs = ShellVAE(**FAST).fit(X).shell_.transform(X)
    np.testing.assert_allclose(Xs, ctx.fitted.shell_.transform(ctx.X), atol=1e-6)


# --------------------------------------------------------------------------- numerical guards
class CountsEpochs(Vanilla):
    """Knows how many epochs have finished (from the loop's after_epoch hook)."""

    epochs_done = 0

    def after_epoch(self, epoch_logs):
        self.epochs_done += 1


class NaNAtEpoch3(CountsEpochs):
    """A method whose extra term is NaN from the third epoch on (an instance is passed, never registered)."""

    name = "test_nan_at_epoch_3"

    def extra_terms(self, out, batch, objective, schedule):
        bad = self.epochs_done >= 2
        return {"trap": (1.0, out.xhat.new_tensor(float("nan")) if bad else out.xhat.new_zeros(()))}


class InfGradAtEpoch3(CountsEpochs):
    """A finite term (0) whose gradient is NaN from the third epoch on: sqrt at 0."""

    name = "test_inf_grad_at_epoch_3"

    def extra_terms(self, out, batch, objective, schedule):
        bad = self.epochs_done >= 2
        value = (out.xhat - out.xhat.detach()).pow(2).sum().sqrt() if bad else out.xhat.new_zeros(())
        return {"trap": (1.0, value)}


def assert_last_good_checkpoint(folder: Path, epoch: int) -> None:
    """The checkpoint holds ``epoch`` finished epochs with finite weights, and nothing half-written is left."""
    assert sorted(p.name for p in folder.iterdir()) == ["ckpt.pt"]  # no temp files, no model or results
    state = storage.load(folder / "ckpt.pt", kind="checkpoint")
    assert state["epoch"] == epoch and len(state["history"]) == epoch
    assert all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.parametrize("method, batch_size, names", [
    (NaNAtEpoch3(), 64, "term 'trap' became non-finite at epoch 3, step 1"),
    (InfGradAtEpoch3(), 1000, "parameter 'encoder.0.weight' became non-finite in epoch 3"),  # one step an epoch
])
def test_non_finite_training_stops_and_keeps_the_last_good_checkpoint(method, batch_size, names, ctx, tmp_path):
    est = ShellVAE(**{**FAST, "method": method, "epochs": 5, "batch_size": batch_size},
                   checkpoint=str(tmp_path / "ckpt.pt"))
    with pytest.raises(NonFiniteError, match=names):
        est.fit(ctx.X)
    assert_last_good_checkpoint(tmp_path, epoch=2)
    # and it still loads into the model: training can go on from there
    state = storage.load(tmp_path / "ckpt.pt", kind="checkpoint")
    ctx.fitted._build_model(8).load_state_dict(state["model"])


def test_cli_run_that_diverges_writes_no_outputs(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(CliExit, match="term 'nll' became non-finite at epoch 1"):
        cli(*CLI_TRAIN, "--sigma2", "1e-300", "--out", str(out))
    assert not out.exists() or not any(out.iterdir())


def test_data_at_1e30_trains_like_data_at_1(ctx):
    """The shell is scale-invariant, so huge (or tiny) data is not a numerical fault."""
    ref = ShellVAE(**FAST).fit(ctx.X)
    for scale in (1e30, 1e-30):
        X = scale * ctx.X.astype(np.float64)
        est = ShellVAE(**FAST).fit(X)
        np.testing.assert_allclose(est.shell_.transform(X), ref.shell_.transform(ctx.X), rtol=0, atol=1e-6)
        assert all(np.isfinite(v) for row in est.history_ for v in row.values())


# --------------------------------------------------------------------------- atomic files
WRITERS = {"savefig", "imsave", "write_text", "write_bytes", "savez", "savez_compressed", "savetxt", "to_csv", "tofile"}


def writes_a_file(call: ast.Call, own_functions: set[str], storage_names: frozenset = frozenset({"storage"})) -> bool:
    """Whether a call writes a file directly (shellvae.base.storage's own writers are the atomic ones;
    ``storage_names``: the names the module imports it under)."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
    if owner in storage_names or (not owner and name in own_functions):  # shellvae.base.storage's writers, or the module's own
        return False
    if name == "open":
        modes = [*call.args[1:2], *[k.value for k in call.keywords if k.arg == "mode"]]
        return any(isinstance(m, ast.Constant) and set(str(m.value)) & set("wax+") for m in modes)
    if name in ("save", "dump"):
        return owner in ("torch", "np", "numpy", "json", "pickle")
    return name in WRITERS


def test_every_file_writer_goes_through_atomic_path():
    """Each call that writes a file inside src/shellvae sits in a ``with atomic_path(...)`` block."""
    offenders = []
    for path in sorted((REPO / "src" / "shellvae").rglob("*.py")):
        tree = ast.parse(path.read_text())
        guarded = {id(n) for w in ast.walk(tree) if isinstance(w, ast.With)
                   and any("atomic_path" in ast.unparse(item.context_expr) for item in w.items) for n in ast.walk(w)}
        own = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
        storage_names = frozenset(a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                                  and n.module == "shellvae.base" for a in n.names if a.name == "storage")
        offenders += [f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)[:80]}" for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and id(node) not in guarded
                      and writes_a_file(node, own, storage_names)]
    assert not offenders, "file writes outside storage.atomic_path:\n" + "\n".join(offenders)


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_exception_inside_the_block_keeps_the_previous_file(tmp_path):
    target = tmp_path / "metrics.json"
    storage.write_json(target, {"kl": 1.0})
    with pytest.raises(RuntimeError):
        with storage.atomic_path(target) as tmp:
            tmp.write_text('{"kl": 2')  # half written
            raise RuntimeError("crash mid-write")
    assert target.read_text() == '{\n  "kl": 1.0\n}\n' and not leftovers(tmp_path)
    with pytest.raises(TypeError):
        storage.write_json(target, {"kl": object()})  # not serialisable: fails before touching the file
    assert target.read_text() == '{\n  "kl": 1.0\n}\n' and not leftovers(tmp_path)


def test_failing_torch_save_keeps_the_previous_model(ctx, tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    ctx.fitted.save(path)
    before = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        ctx.fitted.save(path)
    assert path.read_bytes() == before and not leftovers(tmp_path)
    monkeypatch.undo()
    np.testing.assert_array_equal(ShellVAE.load(path).transform(ctx.X), ctx.fitted.transform(ctx.X))


def test_failing_checkpoint_write_mid_training_keeps_the_last_one(ctx, tmp_path, monkeypatch):
    real_save, calls = torch.save, []

    def fails_on_third(obj, f, *args, **kwargs):
        calls.append(f)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fails_on_third)
    with pytest.raises(OSError):
        ShellVAE(**{**FAST, "epochs": 4}, checkpoint=str(tmp_path / "ckpt.pt")).fit(ctx.X)
    assert_last_good_checkpoint(tmp_path, epoch=2)


def test_failing_figure_write_keeps_the_previous_png(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from shellvae.reporting.figures import save_image_grid

    path = tmp_path / "samples.png"
    rows = np.random.default_rng(0).random((4, 16))
    save_image_grid(rows, (1, 4, 4), path, n_cols=2)
    before = path.read_bytes()

    def crash(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG partial")
        raise OSError("disk unplugged")

    monkeypatch.setattr(Figure, "savefig", crash)
    with pytest.raises(OSError):
        save_image_grid(rows, (1, 4, 4), path, n_cols=2)
    assert path.read_bytes() == before and not leftovers(tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_written_files_get_the_usual_permissions(tmp_path):
    storage.write_text(tmp_path / "a.txt", "x")
    (tmp_path / "b.txt").write_text("x")  # what a plain open() gives under this umask
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "b.txt").stat().st_mode)


def test_cli_outputs_and_checkpoint_are_complete_files(tmp_path):
    out = tmp_path / "run"
    cli(*CLI_TRAIN, "--n-clusters", "8", "--out", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv", "metrics.json", "model.pt",
                                                     "run.json"]
    assert storage.load(out / "checkpoint.pt", kind="checkpoint")["epoch"] == 1
