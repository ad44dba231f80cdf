"""Before training: will a VAE collapse on this data, and can the shell method certify it?

``diagnose`` maps the data to the shell and reports lambda_max, the predicted collapse threshold
for the given sigma^2 and beta (docs/method.md §5), the linear-VAE prediction of KL and active
units, and the cluster geometry T, W, delta across a K sweep, so that K and sigma^2 can be chosen.
The sweep is ``autok.search_k``, the search behind ``ClusterGeometry(n_clusters="auto")``, on
the same seeded subset: its table is the one auto-K reads (auto stops at the first K whose width
reaches its margin; the table goes on through the grid).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from shellvae.base.validation import check_array, check_distinct_rows, check_scalar
from shellvae.errors import ShellVAEError
from shellvae.core.autok import AUTO_K_GRID, search_grid, search_k
from shellvae.core.kmeans import subset_rows
from shellvae.core.shell import R_MAX, R_MIN, SphericalShell
from shellvae.core.theory import collapse_threshold, covariance_spectrum, linear_vae_active_units, linear_vae_kl


@dataclass
class Diagnosis:
    n_samples: int
    n_used: int
    n_features: int
    lambda_max: float
    T: float
    sigma2: float
    beta: float
    collapse_threshold: float  # sigma^2 above which the VAE collapses, lambda_max / beta
    predicted_collapse: bool
    linear_kl: float
    linear_active_units: int
    sweep: list[dict]

    def to_dict(self) -> dict:
        return asdict(self)

    def smallest_feasible_k(self, margin: float = 0.0) -> int | None:
        return next((row["K"] for row in self.sweep if row["width"] > margin), None)

    def __str__(self) -> str:
        lines = [
            f"data: {self.n_samples} x {self.n_features}"
            + (f" (geometry on a seeded subset of {self.n_used})" if self.n_used < self.n_samples else ""),
            f"shell data: lambda_max = {self.lambda_max:.4g}, T = {self.T:.4g}",
            f"sigma^2 = {self.sigma2:.4g} (= {self.sigma2 / self.lambda_max:.3g} lambda_max), beta = {self.beta:g}: "
            f"collapse threshold sigma^2* = lambda_max / beta = {self.collapse_threshold:.4g} -> "
            + ("a vanilla VAE is predicted to COLLAPSE" if self.predicted_collapse else "no collapse predicted"),
            f"linear-VAE optimum at these settings: KL = {self.linear_kl:.3f} nats, "
            f"{self.linear_active_units} active directions",
            "",
            "   K        W    delta  width=(delta-W)/T  region",
        ]
        for row in self.sweep:
            lines.append(f"{row['K']:>4} {row['W']:>8.4f} {row['delta']:>8.4f} {row['width']:>18.3f}  "
                         + ("non-empty" if row["feasible"] else "EMPTY: no certificate possible"))
        k = self.smallest_feasible_k()
        lines.append("")
        lines.append(f"smallest K with a non-empty region: {k}" if k else
                     "no K on this grid gives a non-empty region: try larger K (or the guarantee cannot apply)")
        return "\n".join(lines)


def diagnose(X, *, sigma2: float | None = None, sigma2_ratio: float = 2.0, beta: float = 1.0,
             k_grid=AUTO_K_GRID, r_min: float = R_MIN, r_max: float = R_MAX, radius: str = "minmax",
             max_samples: int | None = 20_000, seed: int = 0) -> Diagnosis:
    """Diagnose X (N, D). K-means runs on at most ``max_samples`` rows (a seeded subset) to stay fast.

    With the same shell settings, ``max_samples`` and ``seed``, the sweep is the one
    ``ClusterGeometry("auto", sweep_samples=max_samples, random_state=seed)`` searches.
    """
    X = check_array(X, "X", min_samples=3)
    check_scalar(beta, "beta", low_open=False)
    check_scalar(sigma2_ratio, "sigma2_ratio")
    if sigma2 is not None:
        check_scalar(sigma2, "sigma2")
    search_grid(k_grid, len(X))  # bad K values fail here, before the shell is fitted
    if max_samples is not None and max_samples < 3:
        raise ShellVAEError(f"max_samples={max_samples}: K-means needs at least 3 samples (or None for all).")
    # as fit: repeated rows warned about, and no K above the distinct rows (its clusters would be empty)
    n_distinct = check_distinct_rows(X, "X", 3, "the K sweep")
    k_grid = search_grid(k_grid, len(X), max_k=n_distinct)
    X_shell = SphericalShell(r_min, r_max, radius=radius).fit_transform(X)
    spectrum = covariance_spectrum(X_shell)
    lam = float(spectrum[0])
    s2 = float(sigma2 if sigma2 is not None else sigma2_ratio * lam)
    rows = subset_rows(len(X_shell), max_samples, seed)
    used = X_shell if rows is None else X_shell[rows]
    search = search_k(used, k_grid, random_state=seed)
    sweep = [dict(row, feasible=bool(row["W"] < row["delta"])) for row in search.rows]
    threshold = collapse_threshold(lam, beta)
    return Diagnosis(
        n_samples=len(X), n_used=len(used), n_features=X.shape[1], lambda_max=lam, T=float(spectrum.sum()),
        sigma2=s2, beta=beta, collapse_threshold=threshold, predicted_collapse=bool(s2 > threshold),
        linear_kl=linear_vae_kl(spectrum, s2, beta), linear_active_units=linear_vae_active_units(spectrum, s2, beta),
        sweep=sweep,
    )
