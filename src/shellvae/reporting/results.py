"""One result record for a trained model, with one set of key names.

``shellvae train`` writes it as ``metrics.json``, every ``shellvae reproduce`` cell stores it,
``shellvae summarize`` and the experiment tables read it. It is flat: the held-out metrics
(``metric_registry.metrics_for("vector")``, in their registration order), then the fields of ``FIELDS`` (the geometry,
the condition, the certificate's verdict and margin, timings), then the run's description
(method, dataset, settings). Table columns are names from ``columns()``.
"""

from __future__ import annotations

import time

from shellvae.evaluation.certificate import Certificate
from shellvae.evaluation.metric_registry import metrics_for

#: the record's values beyond the metrics: name -> what it is
FIELDS = {
    "W": "within-cluster variance of the training shell data (eq. 4)",
    "delta": "collapse loss: between-cluster variance of the training shell data (eq. 5)",
    "T": "total variance of the training shell data (eq. 3)",
    "n_clusters": "K of the cluster geometry",
    "feasible": "whether the feasible region [W, delta) is non-empty",
    "lambda_max": "largest eigenvalue of the training shell data's covariance",
    "sigma2": "the decoder variance",
    "sigma2_ratio": "sigma2 / lambda_max",
    "beta": "the KL weight",
    "eps": "the certificate's margin, certificate_margin * delta (the same rule for every method)",
    "certificate_margin": "the certificate's margin as a share of delta",
    "certified": "whether held-out L_clu < min(delta, collapse floor) - eps in a non-empty region",
    "fit_seconds": "wall time of fit (shell, geometry, training with its per-epoch evaluation)",
    "seconds_per_epoch": "mean training time per epoch (the loop's own timer: no geometry, no evaluation)",
    "epochs": "training epochs",
}


def columns() -> list[str]:
    """Every numeric column a record has: the metrics, then ``FIELDS``."""
    return [m.name for m in metrics_for("vector")] + list(FIELDS)


def result_record(est, X_test, y_test=None, *, dataset: str, fit_seconds: float | None = None,
                  description: str = "", eps: float | None = None) -> tuple[dict, Certificate]:
    """The record of a fitted ``ShellVAE`` evaluated and certified on held-out ``X_test`` (data space;
    ``y_test``: its class labels, for the probes)."""
    metrics = est.evaluate(X_test, y_test)
    cert = est.certify(X_test, eps=eps, metrics=metrics)
    geometry, history = est.geometry_, est.history_
    times = [row["train_time_s"] for row in history if "train_time_s" in row]
    record = {
        **metrics,
        "W": est.W_, "delta": est.delta_, "T": geometry.T_, "n_clusters": int(geometry.n_clusters_),
        "feasible": bool(geometry.feasible_), "lambda_max": est.lambda_max_, "sigma2": est.sigma2_,
        "sigma2_ratio": est.sigma2_ / est.lambda_max_, "beta": est.beta, "eps": cert.eps,
        "certificate_margin": cert.eps / est.delta_ if est.delta_ > 0 else None,
        "certified": cert.certified, "fit_seconds": fit_seconds,
        "seconds_per_epoch": sum(times) / len(times) if times else None, "epochs": est.epochs,
        "method": est.method_.name, "dataset": dataset, "data_description": description,
        "method_params": est.method_.params(), "seed": est.random_state,
        "arch": "custom" if est.custom_networks else est.arch,
        "n_test": len(X_test), "certificate": cert.to_dict(), "k_sweep": geometry.sweep_,
    }
    return record, cert


def fit_and_record(est, X_train, X_test, y_test=None, *, dataset: str, description: str = "",
                   geometry=None) -> tuple[dict, Certificate]:
    """Fit ``est`` on ``X_train`` (per-epoch metrics on ``X_test``), then its record on ``X_test``."""
    t0 = time.perf_counter()
    est.fit(X_train, X_val=X_test, geometry=geometry)
    record, cert = result_record(est, X_test, y_test, dataset=dataset, fit_seconds=time.perf_counter() - t0,
                                 description=description)
    record["n_train"] = len(X_train)
    return record, cert
