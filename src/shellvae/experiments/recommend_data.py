"""Which method for *my* data? ``shellvae.recommend(X)`` / ``shellvae recommend --data FILE``.

Every chosen method is trained with every seed on the user's array, at one shared geometry (all
methods at n_clusters="auto": the same K-means per seed, so one certificate test for all), scored
on a held-out split, and ranked as ``experiments/recommend.py`` ranks Table 1's trainings:
likelihood (nll_iw) among the methods certified in every seed, ties called ties (paired over
seeds), and the cost of the latent against the best uncertified model. The ranking, table,
recommendation sentence and latent cost are recommend.py's own functions.

The trainings are ``cells.Cell``s: each is stored as ``OUT/cells/<key>.json`` when it finishes,
so a rerun, or a run interrupted at any point, trains only what is missing. The data is part of
each cell's key through the SHA-256 of the array (and labels), so another array never reuses a
cell; a renamed file holding the same array does. They run on any executor
(``experiments.executors``): this process, a local pool, or a Ray cluster.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shellvae.base import storage
from shellvae.base.validation import check_array
from shellvae.data.base import Dataset, train_test_split
from shellvae.errors import DataError, ShellVAEError
from shellvae.experiments import recommend as ranking_rules
from shellvae.experiments import table1
from shellvae.experiments.cells import DATA_SEED, Cell, failed, run_cells
from shellvae.experiments.common import DEFAULTS, csv_columns, write_csv
from shellvae.experiments.executors import data_id, make_executor
from shellvae.experiments.paired import TIE_SE
from shellvae.training.methods import METHODS

#: Table 1's methods: the baselines and both shell methods (``shell`` here at auto K, like the rest)
DEFAULT_METHODS = table1.METHODS
DEFAULT_SEEDS = 3
#: sized so that 10,000 x 50 (8,000 training rows) with every default method and seed finishes in
#: minutes on a laptop (docs/recommend.md gives the measured time); more epochs, closer to converged
DEFAULT_EPOCHS = 20
TEST_SIZE = 0.2
NAME = "recommend"
#: the CSV's columns: the rank, the method, then mean and std over seeds of each value
CSV_VALUES = ["nll_iw", "elbo", "kl", "mutual_info", "active_units", "recon_mse", "probe_accuracy",
              "chance_accuracy", "certified_auto", "certified", "diverged", "auto_n_clusters", "fit_seconds"]


@dataclass
class Recommendation:
    """What ``recommend`` found: ``ranking`` ((rank, row) pairs, best first; '—' not certified in every
    seed), the ``sentence``, the Markdown ``table``, the JSON ``verdict``, the cell ``records``, the
    cells that ``failed`` (Ray, twice; rerun to retry) and the ``files`` written (none without ``out``)."""

    ranking: list
    sentence: str
    table: str
    verdict: dict
    records: list = field(repr=False)
    failed: list = field(default_factory=list)
    files: list = field(default_factory=list)

    @property
    def best(self) -> str | None:
        """The recommended method (the first of a tie), or None when none is certified in every seed."""
        return self.verdict["ranking"][0] if self.verdict["ranking"] else None

    def __str__(self) -> str:
        return f"{self.table}\n\nRecommendation. {self.sentence}"


def check_methods(methods) -> list[str]:
    """The chosen methods, each registered and given once; a ShellVAEError names an unknown one."""
    chosen = list(DEFAULT_METHODS if methods is None else
                  [m.strip() for m in methods.split(",")] if isinstance(methods, str) else methods)
    chosen = [m for m in chosen if m]
    if not chosen:
        raise ShellVAEError("methods: give at least one, e.g. methods=['vanilla', 'shell'] (--methods vanilla,shell).")
    for m in chosen:
        if m not in METHODS:
            raise ShellVAEError(f"unknown method {m!r}: use any of {', '.join(METHODS)} (--methods, comma-separated).")
    if len(set(chosen)) != len(chosen):
        raise ShellVAEError(f"methods {chosen}: each method once.")
    return chosen


def check_data(X, y=None) -> tuple[np.ndarray, np.ndarray | None]:
    """X as float32 (N, D) and y as integer labels of the same length (DataError naming the fix)."""
    X = check_array(X, name="X")
    if len(X) < 10:
        raise DataError(f"X has {len(X)} rows: too few to hold out a test split and cluster; give at least 10.")
    if y is None:
        return X, None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"labels have shape {y.shape}; give one class id per row of X (shape ({len(X)},)).")
    if len(y) != len(X):
        raise DataError(f"labels have {len(y)} entries but X has {len(X)} rows: give one label per row, in X's order.")
    if y.dtype.kind not in "biuf" or (y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all())):
        raise DataError(f"labels must be integer class ids (got dtype {y.dtype}).")
    return X, y.astype(np.int64)


def split(X: np.ndarray, y, name: str, test_size: float = TEST_SIZE) -> Dataset:
    """The held-out split every cell shares (seeded: data seed 0, as every cell's data)."""
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size, DATA_SEED)
    return Dataset(name=name, X_train=X_train, X_test=X_test, y_train=y_train, y_test=y_test,
                   description=f"{name}: {len(X)} samples x {X.shape[1]} features{', with labels' if y is not None else ''}; "
                               f"split {len(X_train)} train / {len(X_test)} test (test_size={test_size}, seed "
                               f"{DATA_SEED}); values as given")


def make_cells(data: Dataset, fingerprint: str, methods: list[str], seeds: int, *, epochs: int, sigma2_ratio: float,
               beta: float, condition: str, **estimator) -> list[Cell]:
    """One cell per method and seed, every method at n_clusters="auto" (one geometry per seed for all)."""
    spec = {"dataset": "array", "source": fingerprint, "n_train": len(data.X_train), "n_test": len(data.X_test),
            "data_seed": DATA_SEED, "test_size": TEST_SIZE}
    settings = {key: DEFAULTS[key] for key in ("latent_dim", "batch_size", "lr", "r_min", "r_max", "radius")}
    settings.update({"n_clusters": "auto", "sigma2_ratio": sigma2_ratio, "beta": beta, "epochs": epochs,
                     "eval_every": epochs,  # held-out metrics once, after the last epoch: nothing reads the others
                     "arch": "mlp", "encoder_hidden": list(DEFAULTS["encoder_hidden"]),
                     "decoder_hidden": list(DEFAULTS["decoder_hidden"]), "image_shape": None})
    settings.update({k: list(v) if isinstance(v, tuple) else v for k, v in estimator.items()})
    return [Cell(experiment=NAME, dataset=data.name, condition=condition, method=m, seed=s,
                 estimator={**settings, "method_params": dict(METHODS[m].paper_protocol) or None}, data=spec, label=m)
            for m in methods for s in range(seeds)]


def recommend(X, y=None, *, methods=None, seeds: int = DEFAULT_SEEDS, epochs: int = DEFAULT_EPOCHS,
              sigma2_ratio: float = DEFAULTS["sigma2_ratio"], beta: float = DEFAULTS["beta"], out=None,
              executor="local", jobs: int = 1, address: str | None = None, progress: bool = True,
              name: str = "data", command: str = "", certificate_margin: float = DEFAULTS["certificate_margin"],
              **estimator) -> Recommendation:
    """Train every method in ``methods`` (default: Table 1's ten) with ``seeds`` seeds on ``X`` and
    recommend one: the best held-out likelihood among the methods certified in every seed.

    ``X``: (N, D) array (80% trains, 20% is held out, seeded); ``y``: optional class ids, for the
    probe columns. ``epochs``, ``sigma2_ratio``, ``beta`` and ``**estimator`` (e.g. ``latent_dim``,
    ``batch_size``) are ``ShellVAE`` settings shared by every cell. ``out``: a folder for
    ``recommend.md/.csv/.json`` and ``cells/`` (finished trainings: a rerun resumes); None keeps
    nothing. ``executor``: "local" (``jobs`` processes) or "ray" (``address``: "auto" or
    "HOST:PORT" joins a cluster; None starts a local instance); see ``experiments.executors``.
    """
    from shellvae.base.storage import data_fingerprint

    runner = make_executor(executor, jobs=jobs, address=address)  # a missing Ray is refused before any work
    chosen = check_methods(methods)
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ShellVAEError(f"seeds={seeds!r}: give a whole number >= 1 (seeds 0..N-1 are trained).")
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ShellVAEError(f"epochs={epochs!r}: give a whole number >= 1.")
    X, y = check_data(X, y)
    data = split(X, y, name)
    condition = f"sigma2_ratio={sigma2_ratio:g}, beta={beta:g}"
    cells = make_cells(data, data_fingerprint(X, y), chosen, int(seeds), epochs=int(epochs),
                       sigma2_ratio=float(sigma2_ratio), beta=float(beta), condition=condition, **estimator)
    _check_estimator(cells[0])
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
    # without out, the cells still go through a folder (the executors' one interface), removed afterwards
    with tempfile.TemporaryDirectory(prefix="shellvae-recommend-") if out is None else nullcontext(out) as folder:
        folder = Path(folder)
        t0 = time.perf_counter()
        records = run_cells(cells, folder, executor=runner, progress=progress, desc=NAME,
                            data={data_id(cells[0]): data})
        wall = time.perf_counter() - t0
        result = report(records, data, condition, certificate_margin=certificate_margin, command=command,
                        executor=runner.describe(), wall=wall)
        if out is not None:
            result.files = write(folder, result, chosen, seeds, epochs, wall, runner.describe(), command)
    return result


def _check_estimator(cell: Cell) -> None:
    """The shared settings' ranges (``ShellVAE.check_params``), before any training."""
    from shellvae.estimators.shell_vae import ShellVAE

    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in cell.estimator.items()}
    ShellVAE(cell.method, random_state=cell.seed, **kwargs).check_params()


def report(records: list[dict], data: Dataset, condition: str, *, certificate_margin: float, command: str = "",
           executor: str = "", wall: float | None = None) -> Recommendation:
    """The ranking, table and sentence of the finished records (recommend.py's rules)."""
    lost = failed(records)
    done = [r for r in records if r.get("status") != "failed"]
    if not done:
        raise ShellVAEError(f"every cell failed ({lost[0]['error'] if lost else 'no cells'}); nothing to rank.")
    rows = ranking_rules.table_rows(done, certificate_margin)
    ranked = ranking_rules.ranking(rows)
    sentence = ranking_rules.recommendation(ranked, shell_k="auto K, like every method here")
    verdict = {"condition": condition, **ranking_rules.verdict_of(ranked, sentence),
               "failed": sorted({f"{r['cell']['method']}/seed{r['cell']['seed']}" for r in lost})}
    return Recommendation(ranking=ranked, sentence=sentence, table=ranking_rules.table(ranked), verdict=verdict,
                          records=records, failed=lost)


def write(out: Path, result: Recommendation, methods, seeds, epochs, wall, executor, command) -> list[Path]:
    """OUT/recommend.md, .csv and .json, each written atomically."""
    records = [r for r in result.records if r.get("status") != "failed"]
    first = records[0]
    lines = ["# Which method for this data? Likelihood among certified models", ""]
    if command:
        lines += ["Made by:", "", "```bash", command, "```", ""]
    auto_k = sorted({r.get("auto_n_clusters") for r in records if r.get("auto_n_clusters") is not None})
    lines += [
        f"- data: {first.get('data_description') or ''} (SHA-256 of the array: `{first['config']['data']['source']}`)",
        f"- condition: {result.verdict['condition']} (sigma^2 as a multiple of lambda_max of the shell data)",
        (f"- methods: {', '.join(methods)}; seeds 0..{seeds - 1}; {epochs} epochs each; every method at "
         f"n_clusters='auto' (K = {', '.join(map(str, auto_k)) or '—'}: one geometry per seed, shared by all)"),
        ("- rank: among methods certified in every seed at the auto-K geometry, by held-out nll_iw (lower is "
         "better); '—': not certified in every seed (listed by nll_iw); '=k': tied with the row above (paired "
         f"difference within {TIE_SE:g} standard errors); Δ: nll_iw minus the row above's, mean ± paired s.e."),
        ("- MI: a sampled, biased estimate: values near zero read as zero; probe: 5-fold logistic-regression "
         "accuracy on the posterior means (with labels only)"),
        f"- {len(records)} cells, {executor}; wall time of this run {wall:.0f} s (cells stored earlier are reused)",
    ]
    if result.failed:
        lines.append(f"- **failed (not in the table; rerun the command to retry them): "
                     f"{', '.join(result.verdict['failed'])}**")
    text = "\n".join(lines) + "\n\n" + result.table + "\n\n" + f"**Recommendation.** {result.sentence}\n"
    md, csv, js = out / f"{NAME}.md", out / f"{NAME}.csv", out / f"{NAME}.json"
    storage.write_text(md, text)
    csv_rows = [{"rank": rank, **row} for rank, row in result.ranking]
    write_csv(csv, csv_rows, ["rank", *csv_columns(["method"], CSV_VALUES)])
    storage.write_json(js, {**result.verdict, "command": command, "methods": list(methods), "seeds": seeds,
                            "epochs": epochs, "executor": executor, "wall_seconds": wall,
                            "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return [md, csv, js]

