"""``shellvae recommend``: which method for my data (``experiments/recommend_data.py``), and the
``--executor`` / ``--address`` options it shares with ``reproduce``."""

from __future__ import annotations

import shlex
from pathlib import Path

import click
import numpy as np

from shellvae.cli.inputs import (
    ARRAY_DATA_HELP,
    MAX_SEEDS,
    FiniteFloat,
    FiniteFloatRange,
    OutputPath,
    PerCpu,
    check_data_name,
    clean_errors,
    output_folder,
    same_file,
    short,
)
from shellvae.data import is_array_file, load_dataset
from shellvae.data.arrays import read_array
from shellvae.errors import DataError, ShellVAEError
from shellvae.experiments.common import DEFAULTS
from shellvae.experiments.executors import EXECUTORS, RAY_INSTALL, make_executor
from shellvae.experiments.recommend_data import DEFAULT_EPOCHS, DEFAULT_METHODS, DEFAULT_SEEDS, check_methods
from shellvae.experiments.recommend_data import recommend as run_recommend
from shellvae.training.methods import METHODS


def executor_options(command):
    """--executor and --address (``reproduce`` and ``recommend``)."""
    command = click.option("--address", default=None, metavar="auto|HOST:PORT",
                           help="With --executor ray: join this Ray cluster ('auto': the one `ray start` made on "
                                "this machine); without it, a local Ray instance runs for the command.")(command)
    return click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                        help="Where cells train: local (--jobs processes on this machine) or ray (a Ray task per "
                             f"cell, one CPU each; needs {RAY_INSTALL}). See docs/recommend.md.")(command)


def executor_from_options(executor: str, address: str | None, jobs: int):
    """The executor the options name, refused (missing Ray, --address without ray) before any work."""
    if address is not None and executor != "ray":
        raise click.BadParameter("--address joins a Ray cluster: add --executor ray, or drop --address.",
                                 param_hint="--address")
    if address is not None and not address.strip():
        raise click.BadParameter(f"{address!r} is empty: give auto or HOST:PORT.", param_hint="--address")
    return make_executor(executor, jobs=jobs, address=address)


def read_labels(path: str, n: int) -> np.ndarray:
    """Class ids, one per row of the data: a .npy array (N,) or (N, 1), or a .csv/.txt column (an optional
    header line)."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            y = np.load(p, allow_pickle=False)
        elif suffix in (".csv", ".txt"):
            try:
                y = np.loadtxt(p, delimiter=",", ndmin=1)
            except ValueError:  # a header line
                y = np.loadtxt(p, delimiter=",", ndmin=1, skiprows=1)
        else:
            raise DataError(f"--labels {short(path)!r}: give a .npy or .csv file of class ids, one per row of --data.")
    except DataError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(f"--labels {short(path)!r}: not readable as class ids ({type(exc).__name__}: "
                        f"{short(exc, 200)}); give a .npy array or a .csv column of integers.") from None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"--labels {short(path)!r} holds {y.shape} values but --data has {n} rows: give one class id "
                        "per row, in the same order.")
    return y


@click.command()
@click.option("--data", required=True, help=ARRAY_DATA_HELP + ". Rows are samples; 20% is held out (seeded).")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder holding a named dataset's files.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Class ids, one per row of --data (.npy or a .csv column): adds the probe-accuracy columns.")
@click.option("--methods", default=",".join(DEFAULT_METHODS), show_default=True,
              help="Comma-separated methods to compare, any of: " + ", ".join(METHODS) + ".")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=DEFAULT_SEEDS, show_default=True,
              help="Seeds per method (0..N-1): ties are called from the paired spread over seeds.")
@click.option("--epochs", type=click.IntRange(min=1), default=DEFAULT_EPOCHS, show_default=True)
@click.option("--sigma2-ratio", type=FiniteFloat(), default=DEFAULTS["sigma2_ratio"], show_default=True,
              help="Decoder variance as a multiple of lambda_max of the shell data, for every method.")
@click.option("--beta", type=FiniteFloat(), default=DEFAULTS["beta"], show_default=True, help="KL weight.")
@executor_options
@click.option("--jobs", type=PerCpu(1), default=1, show_default=True,
              help="Local executor: cells in this many processes. Ray: the CPUs of the local instance it starts.")
@click.option("--out", type=OutputPath(file_okay=False), required=True,
              help="Output folder: recommend.md/.csv/.json and cells/ (one JSON per training; a rerun resumes).")
@click.option("--certificate-margin", type=FiniteFloatRange(0, 1), default=DEFAULTS["certificate_margin"],
              show_default=True, help="The certificate's margin as a share of delta, for every method.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@clean_errors
def recommend(data, data_dir, labels, methods, seeds, epochs, sigma2_ratio, beta, executor, address, jobs, out,
              certificate_margin, quiet):
    """Which method for my data? Train every method x seed on it, rank held-out likelihood among the
    certified models, and write OUT/recommend.md, .csv and .json (docs/recommend.md)."""
    import torch

    try:
        chosen = check_methods(methods)
    except ShellVAEError as exc:
        raise click.BadParameter(str(exc), param_hint="--methods") from None
    for value, option in ((sigma2_ratio, "--sigma2-ratio"), (beta, "--beta")):
        if value <= 0 if option == "--sigma2-ratio" else value < 0:
            raise click.BadParameter(f"{value}: must be {'> 0' if option == '--sigma2-ratio' else '>= 0'}.",
                                     param_hint=option)
    runner = executor_from_options(executor, address, jobs)
    check_data_name(data)
    if is_array_file(data) and same_file(Path(out) / "recommend.csv", data):
        raise click.BadParameter(f"{out} would overwrite the --data file: give another folder.", param_hint="--out")
    if labels is not None and not is_array_file(data):
        raise click.BadParameter(f"--labels is for a data file; {data!r} brings its own labels.", param_hint="--labels")
    parent = click.get_current_context().parent
    if parent is None or parent.params.get("threads") is None:  # as reproduce: one thread a process
        torch.set_num_threads(1)
    args = ["shellvae", "recommend", "--data", data, *(["--labels", labels] if labels else [])]
    if chosen != list(DEFAULT_METHODS):
        args += ["--methods", ",".join(chosen)]
    for option, value, default in (("--seeds", seeds, DEFAULT_SEEDS), ("--epochs", epochs, DEFAULT_EPOCHS),
                                   ("--sigma2-ratio", sigma2_ratio, DEFAULTS["sigma2_ratio"]),
                                   ("--beta", beta, DEFAULTS["beta"]), ("--jobs", jobs, 1),
                                   ("--certificate-margin", certificate_margin, DEFAULTS["certificate_margin"])):
        args += [] if value == default else [option, str(value)]
    args += [] if executor == "local" else ["--executor", executor] + (["--address", address] if address else [])
    args += ["--out", str(out)]
    with output_folder(out) as folder:
        if is_array_file(data):
            X, y, _ = read_array(data)
            name = Path(data).stem
        else:
            dataset = load_dataset(data, data_dir)
            X = np.concatenate([dataset.X_train, dataset.X_test])
            y = None if dataset.y_train is None else np.concatenate([dataset.y_train, dataset.y_test])
            name = dataset.name
        if labels is not None:
            y = read_labels(labels, len(X))
        result = run_recommend(X, y, methods=chosen, seeds=seeds, epochs=epochs, sigma2_ratio=sigma2_ratio,
                               beta=beta, out=folder, executor=runner, progress=not quiet, name=name,
                               command=" ".join(shlex.quote(a) for a in args), certificate_margin=certificate_margin)
    click.echo(str(result))
    if result.failed:
        click.echo(f"\n{len(result.failed)} cell(s) failed and are not in the table: {', '.join(result.verdict['failed'])}"
                   "; rerun the same command to retry them.", err=True)
    click.echo("wrote " + ", ".join(str(f) for f in result.files))
