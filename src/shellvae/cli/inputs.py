"""What the command line checks before any work: option types that refuse NaN and infinities,
method hyperparameters, output paths (created or found writable first, removed again if the
command fails while they are still empty), and one ``Error:`` line for every ``ShellVAEError``.

``shellvae.cli`` holds the commands; this module holds the checks they share, so that a bad input
fails before data is read, a shell fitted or a model trained (``tests/test_cli_fuzz.py``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import re
from pathlib import Path

import click

from shellvae.base import storage
from shellvae.cli.run_folder import check_replaceable
from shellvae.data import DATASETS, is_array_file
from shellvae.errors import is_out_of_memory, ShellVAEError
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
        except OSError as exc:
            if exc.errno != errno.ENAMETOOLONG:  # a name the user gave that no file system takes
                raise
            raise click.ClickException(f"{short(exc.filename)!r}: {exc.strerror}; give a shorter path.") from None
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            detail = " ".join(str(exc).split())[:300]
            raise click.ClickException(f"out of memory ({type(exc).__name__}: {detail}). {memory_advice(detail)}") \
                from None
    return wrapper


def memory_advice(detail: str) -> str:
    """What shrinks the allocation that failed: a D x D array is the covariance of D features, which no
    option of shellvae shrinks; anything else grows with the model and the batch."""
    square = re.search(r"shape \((\d+), \1\)", detail)
    if square:
        d = int(square.group(1))
        return (f"That is a {d:,} x {d:,} covariance: the data has {d:,} features (columns), and the shell's "
                "lambda_max and the cluster geometry need their covariance. Reduce the features first (e.g. PCA to a "
                "few hundred, or smaller images); --latent-dim, --batch-size and --n-train do not shrink it.")
    return "Use a smaller --latent-dim, --batch-size or --n-train, or a machine with more memory."




#: diagnose's --data: arrays only (token sequences are not diagnosed)
ARRAY_DATA_HELP = (", ".join(DATASETS) + ", or a .npy/.npz/.csv file of shape (N, D): "
                   + "; ".join(f"{name}: {spec.summary}" for name, spec in DATASETS.items()))


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


#: reproduce --seeds: more than any study of seeds needs (each seed retrains every cell of the experiment)
MAX_SEEDS = 100


class PerCpu(click.IntRange):
    """A count of threads or processes: at least 1, at most ``per_cpu`` for each CPU of this machine (more only
    oversubscribes it; 100,000 threads exhaust its memory before any work)."""

    def __init__(self, per_cpu: int):
        super().__init__(min=1, max=per_cpu * (os.cpu_count() or 1))

    def convert(self, value, param, ctx):
        number = click.INT.convert(value, param, ctx)
        if number > self.max:
            self.fail(f"{number}: this machine has {os.cpu_count() or 1} CPUs; give at most {self.max}.", param, ctx)
        return super().convert(number, param, ctx)


class OutputPath(click.Path):
    """An output path: refuses the empty string (which would mean the current folder)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail(f"{value!r} is empty; give a path.", param, ctx)
        try:
            Path(value).exists()
        except (OSError, ValueError) as exc:  # e.g. a name too long for the file system
            self.fail(f"{short(value)!r} is not a usable path ({getattr(exc, 'strerror', None) or exc}).", param, ctx)
        return super().convert(value, param, ctx)


def short(text: str, limit: int = 100) -> str:
    """A user's value as an error message quotes it: long ones cut, with '...'."""
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


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
def output_file(path, replaces: str | None = None):
    """``output_folder`` for an output file: its folder is made and the file checked writable before
    any work (``None``: no file, nothing to check). ``replaces``: the kind of file (``run_folder``'s
    "table", "diagnosis") that an existing file must be to be replaced; a model, a checkpoint or data never is."""
    if path is None:
        yield None
        return
    path = Path(path)
    if replaces is not None:
        check_replaceable(path, replaces)
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
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:  # (nested too deep)
        raise ShellVAEError(f"{path}: not a readable JSON file ({type(exc).__name__}: {short(exc, 200)}).") from None
    if not isinstance(record, dict):
        raise ShellVAEError(f"{path}: holds a JSON {type(record).__name__}, not the object 'shellvae train' writes.")
    return record


#: the fields of a metrics.json's data_spec (what 'shellvae show' reloads), each with the test its value passes
DATA_SPEC_FIELDS = {
    "data": (lambda v: isinstance(v, str) and v != "", "a dataset name or a file path"),
    "data_dir": (lambda v: v is None or isinstance(v, str), "a folder or null"),
    "n_train": (lambda v: v is None or (type(v) is int and v >= 1), "a positive integer or null"),
    "n_test": (lambda v: v is None or (type(v) is int and v >= 1), "a positive integer or null"),
    "seed": (lambda v: type(v) is int and 0 <= v < 2**32, "an integer in 0..2**32-1"),
    "test_size": (lambda v: type(v) in (int, float) and 0 < v < 1, "a number between 0 and 1"),
    "mmap": (lambda v: isinstance(v, bool), "true or false"),
}


def check_data_spec(spec: dict, path) -> None:
    """A data_spec read back from a run's metrics.json: each field of the type 'shellvae train' wrote."""
    for key, value in spec.items():
        test, what = DATA_SPEC_FIELDS.get(key, (lambda v: True, ""))  # others (text options) are not reloaded here
        if not test(value):
            raise ShellVAEError(f"{path}: data_spec {key!r} is {short(repr(value), 60)}, not {what}; the file was "
                                "edited or damaged. Restore it, or retrain.")


def check_data_name(data: str) -> None:
    if not is_array_file(data) and data not in DATASETS:
        raise ShellVAEError(f"--data {data!r}: use one of {', '.join(DATASETS)} or a .npy/.npz/.csv file path.")
    try:
        problem = None if not is_array_file(data) or Path(data).is_file() else (
            "a folder, not a file" if Path(data).is_dir() else "no such file")
    except (OSError, ValueError) as exc:  # e.g. a name too long for the file system
        problem = f"not a usable path ({getattr(exc, 'strerror', None) or exc})"
    if problem:
        raise ShellVAEError(f"--data {short(data)!r}: {problem}.")


def dataset_name(name: str, option: str) -> str:
    """A registered dataset's canonical name, or a usage error for ``option``."""
    try:
        return DATASETS.canonical(name.strip().replace("-", "_"))
    except ShellVAEError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None
