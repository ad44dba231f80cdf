"""What the command line checks before any work: option types that refuse NaN and infinities,
method hyperparameters, output paths (created or found writable first, removed again if the
command fails while they are still empty), and one ``Error:`` line for every ``ShellVAEError``.

``shellvae.cli`` holds the commands; this module holds the checks they share, so that a bad input
fails before data is read, a shell fitted or a model trained (``tests/test_cli_fuzz.py``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
from pathlib import Path

import click

from shellvae.base import storage
from shellvae.data import DATASETS, is_array_file
from shellvae.errors import ShellVAEError
from shellvae.training.methods import METHODS


def clean_errors(command):
    """Report a ShellVAEError (bad input, diverged training) or running out of memory as a one-line CLI
    error, exit 1, no traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ShellVAEError as exc:
            raise click.ClickException(str(exc)) from None
        except (MemoryError, RuntimeError) as exc:
            if not out_of_memory(exc):
                raise
            detail = " ".join(str(exc).split())[:300]
            raise click.ClickException(f"out of memory ({type(exc).__name__}: {detail}). Use a smaller --latent-dim, "
                                       "--batch-size or --n-train, or a machine with more memory.") from None
    return wrapper


def out_of_memory(exc: BaseException) -> bool:
    import torch

    return (isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError)))
            or "can't allocate memory" in str(exc) or "out of memory" in str(exc).lower())


class _Finite:
    """Refuses NaN and the infinities, which click's float type (and FloatRange) accept."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class FiniteFloat(_Finite, click.types.FloatParamType):
    """A float option's type: any finite number (its range is checked where it is defined)."""


class FiniteFloatRange(_Finite, click.FloatRange):
    """A finite float in a range."""


class OutputPath(click.Path):
    """An output path: refuses the empty string (which would mean the current folder)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail(f"{value!r} is empty; give a path.", param, ctx)
        return super().convert(value, param, ctx)


#: the option that sets each ShellVAE parameter (its range is checked by ShellVAE.check_params)
OPTION_OF = {"latent_dim": "--latent-dim", "epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
             "sigma2": "--sigma2", "sigma2_ratio": "--sigma2-ratio", "beta": "--beta", "random_state": "--seed",
             "certificate_margin": "--certificate-margin", "device": "--device", "compile": "--compile"}


def check_estimator(est, options: dict[str, str] | None = None) -> None:
    """``est.check_params()`` before any data is read; a bad value is reported as a bad value of its
    option (``OPTION_OF``, and ``options``: more parameter -> option names, e.g. a ``SequenceVAE``'s)."""
    option_of = {**OPTION_OF, **(options or {})}
    try:
        est.check_params()
    except ShellVAEError as exc:
        name = re.match(r"(\w+)=", str(exc))
        if name and name.group(1) in option_of:
            raise click.BadParameter(str(exc), param_hint=option_of[name.group(1)]) from None
        raise


def check_not_both(first: str, second: str) -> None:
    """Refuse two options that exclude each other when both are given on the command line."""
    ctx = click.get_current_context()
    given = [name for name in (first, second)
             if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)]
    if len(given) == 2:
        options = [f"--{name.replace('_', '-')}" for name in given]
        raise click.UsageError(f"{options[0]} and {options[1]} exclude each other: give one of them.", ctx)


def parse_n_clusters(value: str):
    if value == "auto":
        return "auto"
    try:
        k = int(value)
    except ValueError:
        k = None
    if k is None or k < 2:
        raise click.BadParameter(f"{value!r}: give an integer >= 2 or 'auto'.", param_hint="--n-clusters")
    return k


def parse_method_params(method: str, pairs: tuple[str, ...]) -> dict:
    """``-p KEY=VALUE`` pairs as the method's typed, range-checked hyperparameters (the method's
    dataclass fields declare them): refused with the method, key, type and range before any data is read."""
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE, e.g. lambda_b=5.", param_hint="-p")
        if key in params:
            raise click.BadParameter(f"{key!r} is given twice; give each hyperparameter once.", param_hint="-p")
        try:
            params[key] = METHODS[method].convert(key, raw)
        except ShellVAEError as exc:
            raise click.BadParameter(str(exc), param_hint="-p") from None
    return params


@contextlib.contextmanager
def output_folder(path):
    """Create ``path`` (a folder for the outputs) before any work, refusing one that cannot be written;
    if the block fails, the folders made here (``path`` and any missing parents) are removed again
    while they are empty."""
    path = Path(path)
    with removing_new_folders(path):
        storage.check_writable_folder(path)
        yield path


@contextlib.contextmanager
def output_file(path):
    """``output_folder`` for an output file: its folder is made and the file checked writable before
    any work (``None``: no file, nothing to check)."""
    if path is None:
        yield None
        return
    path = Path(path)
    with removing_new_folders(path.parent):
        storage.check_writable_file(path)
        yield path


@contextlib.contextmanager
def removing_new_folders(path: Path):
    """If the block fails, remove ``path`` and its parents that did not exist before it, while empty."""
    try:
        new = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    except (OSError, ValueError):  # a name the system refuses: nothing can be made there
        new = []
    try:
        yield
    except BaseException:
        for folder in new:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


RUN_FILES = ("metrics.json", "history.csv", "model.pt", "checkpoint.pt")  # what train writes into OUT
IMAGE_FILES = ("reconstructions.png", "samples.png")  # and with --show, or 'shellvae show'


def check_output_files(folder: Path, names) -> None:
    """Each file the command will write into ``folder`` can be written (e.g. none of them is a folder)."""
    for name in names:
        storage.check_writable_file(folder / name)


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` name the same existing file."""
    try:
        return Path(a).resolve() == Path(b).resolve() and Path(a).exists()
    except (OSError, ValueError, RuntimeError):
        return False


def read_json(path: Path) -> dict:
    """A JSON object from ``path``, or a ShellVAEError naming the file."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShellVAEError(f"{path}: not a readable JSON file ({type(exc).__name__}: {exc}).") from None
    if not isinstance(record, dict):
        raise ShellVAEError(f"{path}: holds a JSON {type(record).__name__}, not the object 'shellvae train' writes.")
    return record


def check_data_name(data: str) -> None:
    if not is_array_file(data) and data not in DATASETS:
        raise ShellVAEError(f"--data {data!r}: use one of {', '.join(DATASETS)} or a .npy/.npz/.csv file path.")
    if is_array_file(data) and not Path(data).is_file():
        problem = "a folder, not a file" if Path(data).is_dir() else "no such file"
        raise ShellVAEError(f"--data {data!r}: {problem}.")


def dataset_name(name: str, option: str) -> str:
    """A registered dataset's canonical name, or a usage error for ``option``."""
    try:
        return DATASETS.canonical(name.strip().replace("-", "_"))
    except ShellVAEError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
