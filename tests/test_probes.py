"""Is the latent useful? (docs/method.md §6): linear-probe and k-NN accuracy of labels from posterior means.

Separable clusters score ~1, a collapsed latent scores exactly chance (the majority share),
labels shuffled against the latent score about chance.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shellvae import ShellVAEError
from shellvae.evaluation.probes import active_dims, chance_accuracy, knn_accuracy, probe_accuracy

PROBES = [probe_accuracy, knn_accuracy]


def clusters(n_per_class=(60, 60, 60), latent_dim=4, spread=0.1, seed=0):
    """Posterior means around one centre per class, the centres far apart."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    centres = rng.normal(size=(len(n_per_class), latent_dim)) * 2
    return centres[y] + spread * rng.normal(size=(len(y), latent_dim)), y


def test_chance_is_the_majority_share():
    assert chance_accuracy([0, 0, 0, 1, 2, 2]) == 0.5
    assert chance_accuracy(np.array(["a", "b", "b", "b"])) == 0.75


@pytest.mark.parametrize("probe", PROBES)
def test_separable_clusters_score_near_one(probe):
    Z, y = clusters()
    assert probe(Z, y) >= 0.98


@pytest.mark.parametrize("probe", PROBES)
def test_labels_can_be_strings_and_latents_tensors(probe):
    Z, y = clusters()
    names = np.array(["cat", "dog", "eel"])[y]
    assert probe(torch.tensor(Z, dtype=torch.float32), names) == probe(Z, y)


@settings(max_examples=25, deadline=None)
@given(counts=st.lists(st.integers(5, 40), min_size=2, max_size=6), value=st.floats(-5, 5),
       latent_dim=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_a_collapsed_latent_scores_exactly_chance(counts, value, latent_dim, seed):
    """Constant posterior means (a collapsed encoder): no feature varies, so the score is the majority share."""
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))
    Z = np.full((len(y), latent_dim), value)
    for probe in PROBES:
        assert probe(Z, y) == chance_accuracy(y)


@pytest.mark.parametrize("probe", PROBES)
def test_a_nearly_collapsed_latent_scores_chance(probe):
    """Means that vary with x but far below the prior's scale (KL ~ 0): the decoder cannot use them,
    so the probe must not read the labels off them (standardising would, see probes' docstring)."""
    Z, y = clusters(n_per_class=(90, 60, 30))
    tiny = 1e-3 * Z
    assert probe(tiny, y) == chance_accuracy(y) == 0.5
    assert probe(tiny, y, active_threshold=0) >= 0.98  # every non-constant dimension kept: the labels are there


def test_only_the_active_dimensions_are_used():
    Z = np.column_stack([np.zeros(10), np.linspace(-1, 1, 10), 0.01 * np.linspace(-1, 1, 10)])
    assert active_dims(Z).tolist() == [1]
    assert active_dims(Z, 0).tolist() == [1, 2]


@pytest.mark.parametrize("probe", PROBES)
def test_shuffled_labels_score_near_chance(probe):
    Z, y = clusters(n_per_class=(100, 100, 100, 100))
    shuffled = np.random.default_rng(1).permutation(y)
    assert abs(probe(Z, shuffled) - chance_accuracy(shuffled)) < 0.1


@pytest.mark.parametrize("probe", PROBES)
def test_results_are_seeded(probe):
    Z, y = clusters(spread=2.0)  # overlapping: the folds matter
    assert probe(Z, y, random_state=3) == probe(Z, y, random_state=3)
    assert probe(Z, y, random_state=0) != probe(Z, y, random_state=2)  # the seed sets the folds


@pytest.mark.parametrize("probe", PROBES)
def test_classes_smaller_than_the_folds_use_fewer_folds_with_a_warning(probe):
    Z, y = clusters(n_per_class=(40, 40, 3))
    with pytest.warns(UserWarning, match="3 rows, fewer than cv=5 folds: using 3 folds"):
        score = probe(Z, y)
    assert score >= 0.95
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probe(Z, y, cv=3)


def test_knn_caps_k_at_the_training_fold():
    Z, y = clusters(n_per_class=(3, 3))  # 3 folds: 4 training rows each
    assert knn_accuracy(Z, y, k=50, cv=3) == knn_accuracy(Z, y, k=4, cv=3)
    assert knn_accuracy(Z, y, k=1, cv=3) == 1.0


@pytest.mark.parametrize("probe", PROBES)
@pytest.mark.parametrize("Z, y, match", [
    (np.zeros((5, 2)), [0, 1, 0, 1], "one label per row"),
    (np.zeros((4, 2)), [1, 1, 1, 1], "at least 2"),
    (np.array([[0.0], [np.nan], [1.0], [2.0]]), [0, 1, 0, 1], "NaN"),
    (np.zeros(4), [0, 1, 0, 1], "shape"),
    (np.zeros((4, 2)), np.zeros((4, 1)), "one label per row"),
    (np.zeros((5, 2)), [0, 0, 1, 1, 2], "single row"),
    (np.zeros((4, 2)), [0.0, np.nan, 1.0, 1.0], "NaN"),
])
def test_bad_input_is_refused(probe, Z, y, match):
    with pytest.raises(ShellVAEError, match=match):
        probe(Z, y)


def test_bad_settings_are_refused():
    Z, y = clusters()
    with pytest.raises(ShellVAEError, match="cv"):
        probe_accuracy(Z, y, cv=1)
    with pytest.raises(ShellVAEError, match="k="):
        knn_accuracy(Z, y, k=0)
