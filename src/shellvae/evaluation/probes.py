"""Is the latent useful? How well labels can be read off the posterior means (docs/method.md §6).

- ``probe_accuracy``: a linear probe, multinomial logistic regression on standardised posterior means;
- ``knn_accuracy``: k-nearest neighbours on the posterior means, in the latent's own coordinates;
- ``chance_accuracy``: the majority class's share, what a latent that carries nothing scores;
- ``probe_metrics``: the probe and chance together, over the classes that have enough rows to be
  cross-validated (the others are dropped and reported, instead of failing an evaluation).

Both accuracies are cross-validated on the evaluated set itself (stratified folds, shuffled with
``random_state``): every row is predicted once by a classifier that did not see it, and the
accuracy is the share of rows predicted right (pooled over the folds).

Inactive latent dimensions are dropped first: those whose posterior mean varies across the
rows by no more than ``active_threshold`` (Cov_x(E_q[z_j]) <= 0.01, the active-unit criterion of
Burda et al. 2016, the same as ``metrics.active_units``). Why: under the N(0, I) prior such a
dimension's posterior noise swamps its mean, so the decoder cannot use it, yet a collapsed
encoder's means still vary by tiny amounts that depend on x. Standardising would blow those up
to unit scale and k-NN is scale-free, so both would read the labels off a latent that carries no
information and a collapsed model would score far above chance. With no dimension left (a
collapsed model, a constant Z), both return ``chance_accuracy(y)``: there is nothing to classify
from, and a classifier without features predicts the majority class. Pass ``active_threshold=0``
to keep every non-constant dimension (latents that are not posterior means under N(0, I)).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from shellvae.errors import ShellVAEError

#: Cov_x(E_q[z_j]) at or below this: an inactive unit (Burda et al. 2016; = metrics.ACTIVE_UNIT_THRESHOLD)
ACTIVE_UNIT_THRESHOLD = 0.01


def _labels(y, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class codes 0..C-1 of y (any hashable labels), the classes and their counts; checks the labels."""
    if hasattr(y, "detach"):  # a torch tensor
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShellVAEError(f"y has shape {y.shape}; expected one label per row, shape (n_rows,).")
    if n_rows is not None and len(y) != n_rows:
        raise ShellVAEError(f"Z has {n_rows} rows but y has {len(y)} labels: pass one label per row of Z.")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ShellVAEError(f"y holds {int((~np.isfinite(y)).sum())} NaN or infinite label(s): drop those rows.")
    classes, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        raise ShellVAEError(f"y has {len(classes)} class(es); accuracy against chance needs at least 2.")
    return codes.reshape(-1), classes, counts


def chance_accuracy(y) -> float:
    """The majority class's share of y: the accuracy of always predicting the most frequent class."""
    _, _, counts = _labels(y)
    return float(counts.max() / counts.sum())


def _latents(Z) -> np.ndarray:
    if hasattr(Z, "detach"):  # a torch tensor, possibly on a GPU
        Z = Z.detach().cpu().numpy()
    Z = np.asarray(Z)
    if Z.ndim != 2 or Z.shape[0] == 0 or Z.shape[1] == 0:
        raise ShellVAEError(f"Z has shape {Z.shape}; expected (n_rows, latent_dim), e.g. the posterior means mu.")
    if Z.dtype.kind not in "biuf":
        raise ShellVAEError(f"Z has dtype {Z.dtype}; expected real numbers.")
    Z = Z.astype(np.float64)
    if not np.isfinite(Z).all():
        raise ShellVAEError(f"Z holds {int((~np.isfinite(Z)).sum())} NaN or infinite value(s): the encoder diverged?")
    return Z


def active_dims(Z, active_threshold: float = ACTIVE_UNIT_THRESHOLD) -> np.ndarray:
    """Indices of the columns of Z whose variance across rows exceeds ``active_threshold`` (and 0)."""
    var = _latents(Z).var(axis=0)
    return np.flatnonzero((var > active_threshold) & (var > 0))


def _folds(codes: np.ndarray, counts: np.ndarray, classes: np.ndarray, cv: int, random_state) -> list:
    """Stratified folds; fewer than ``cv`` (with a warning) when the smallest class has fewer members."""
    if isinstance(cv, bool) or not isinstance(cv, (int, np.integer)) or cv < 2:
        raise ShellVAEError(f"cv={cv!r}: need an integer number of folds >= 2.")
    smallest = int(counts.min())
    if smallest < 2:
        rare = classes[counts < 2][:5].tolist()
        raise ShellVAEError(
            f"class(es) {rare} have a single row: cross-validation needs at least 2 rows per class "
            "(to train on one and test on the other). Drop or merge such classes."
        )
    if smallest < cv:
        warnings.warn(
            f"the smallest class ({classes[counts.argmin()]!r}) has {smallest} rows, fewer than cv={cv} folds: "
            f"using {smallest} folds.", stacklevel=3
        )
    skf = StratifiedKFold(n_splits=min(int(cv), smallest), shuffle=True, random_state=random_state)
    return list(skf.split(np.zeros(len(codes)), codes))


def _cross_validated_accuracy(make_estimator, Z, y, cv, random_state, active_threshold) -> float:
    Z = _latents(Z)
    codes, classes, counts = _labels(y, len(Z))
    folds = _folds(codes, counts, classes, cv, random_state)
    keep = active_dims(Z, active_threshold)
    if len(keep) == 0:  # nothing to classify from: the featureless classifier's score, exactly
        return float(counts.max() / counts.sum())
    smallest_train = min(len(train) for train, _ in folds)
    predicted = cross_val_predict(make_estimator(smallest_train), Z[:, keep], codes, cv=folds)
    return float(np.mean(predicted == codes))


def probe_accuracy(Z, y, *, cv: int = 5, random_state=0, active_threshold: float = ACTIVE_UNIT_THRESHOLD,
                   C: float = 1.0, max_iter: int = 1000) -> float:
    """Cross-validated accuracy of a linear probe reading y from the latents Z (N, d).

    Multinomial logistic regression (L2, strength 1/C) on the active dimensions of Z, each
    standardised on the training folds; ``cv`` stratified folds (fewer, with a warning, when a
    class has fewer rows). A collapsed model scores ``chance_accuracy(y)`` (module docstring).
    Z: posterior means (array or tensor); y: one label per row (ints, strings, ...).
    """
    def estimator(_):
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))

    return _cross_validated_accuracy(estimator, Z, y, cv, random_state, active_threshold)


def knn_accuracy(Z, y, *, k: int = 10, cv: int = 5, random_state=0,
                 active_threshold: float = ACTIVE_UNIT_THRESHOLD) -> float:
    """Cross-validated accuracy of k-nearest-neighbour classification (Euclidean, majority vote) of y from Z.

    On the active dimensions of Z, not standardised: the N(0, I) prior already puts the latent
    dimensions on one scale, and standardising would give a barely active dimension the weight
    of a fully used one. ``k`` is capped at the smallest training fold. Folds, inputs and the
    collapsed case as in ``probe_accuracy``.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ShellVAEError(f"k={k!r}: need a positive integer number of neighbours.")

    def estimator(n_train):
        return KNeighborsClassifier(n_neighbors=min(int(k), n_train))

    return _cross_validated_accuracy(estimator, Z, y, cv, random_state, active_threshold)


def probe_metrics(Z, y, *, cv: int = 5, random_state=0) -> dict:
    """``probe_accuracy`` and ``chance_accuracy`` of labels y from latents Z, over the classes it can
    cross-validate: a class with fewer than ``cv`` rows cannot be in every one of ``cv`` stratified
    folds, so it is dropped (``probe_dropped_classes``, ``probe_dropped_rows``, and a sentence in
    ``probe_note``) and both accuracies are computed on the rows left, so they compare like with like.
    With fewer than 2 classes left, both are None and ``probe_note`` says why: there is nothing to
    tell apart. Real labels (categories of a text corpus) have such rare classes; an evaluation
    loses only the probe for them, never the metrics that need no labels."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ShellVAEError(f"y has shape {y.shape}; expected one label per row, shape (n_rows,).")
    classes, counts = np.unique(y, return_counts=True)
    rare = classes[counts < cv]
    keep = ~np.isin(y, rare)
    out = {"probe_dropped_classes": rare.tolist(), "probe_dropped_rows": int((~keep).sum())}
    note = (f"dropped {len(rare)} class(es) with fewer than {cv} rows, {out['probe_dropped_rows']} rows: "
            f"{', '.join(map(str, rare[:10].tolist()))}{' ...' if len(rare) > 10 else ''}") if len(rare) else None
    if len(classes) - len(rare) < 2:
        reason = (f"{len(classes) - len(rare)} class(es) with at least {cv} rows (the cross-validation folds) "
                  "remain: a probe needs 2")
        return {**out, "probe_accuracy": None, "chance_accuracy": None,
                "probe_note": reason if note is None else f"{reason}; {note}"}
    Z = _latents(Z)
    if len(Z) != len(y):
        raise ShellVAEError(f"Z has {len(Z)} rows but y has {len(y)} labels: pass one label per row of Z.")
    return {**out, "probe_accuracy": probe_accuracy(Z[keep], y[keep], cv=cv, random_state=random_state),
            "chance_accuracy": chance_accuracy(y[keep]), "probe_note": note}
