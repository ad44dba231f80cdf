"""Names that agree (issue 24): the ``register_*`` family, every method class exported, the base
``Method`` abstract, and the released names that changed still working, each with a warning."""

import pytest
import torch

import shellvae
from shellvae import METHODS, METRICS, Method, Vanilla


def test_every_registered_method_class_is_exported():
    for cls in METHODS.values():
        assert getattr(shellvae, cls.__name__) is cls


def test_the_base_method_is_abstract_and_vanilla_is_its_own_subclass():
    with pytest.raises(TypeError, match="abstract"):
        Method()
    assert Vanilla.name == "vanilla" and METHODS["vanilla"] is Vanilla and Vanilla.summary


def test_register_functions_share_one_prefix():
    assert {n for n in shellvae.__all__ if n.startswith("register")} == {
        "register", "register_architecture", "register_dataset", "register_method", "register_per_row_metric",
        "register_whole_set_metric"}


def test_the_released_register_still_registers_with_a_warning():
    from dataclasses import dataclass

    with pytest.warns(DeprecationWarning, match="register_method"):
        @shellvae.register
        @dataclass(repr=False)
        class OldStyle(Method):
            name = "old_style_for_the_test"
    try:
        assert METHODS["old_style_for_the_test"] is OldStyle
    finally:
        METHODS.remove("old_style_for_the_test")


@pytest.mark.parametrize("old, new", [("per_row", "register_per_row_metric"),
                                      ("whole_set", "register_whole_set_metric")])
def test_the_released_metric_decorators_still_register_with_a_warning(old, new):
    with pytest.warns(DeprecationWarning, match=new):
        getattr(shellvae, old)("metric_for_the_test", "a test metric")(lambda batch: torch.zeros(1))
    try:
        assert METRICS["metric_for_the_test"].doc == "a test metric"
    finally:
        METRICS.remove("metric_for_the_test")


def test_delta_has_one_name_and_the_released_one_warns():
    data = shellvae.make_gmm(n_samples=200, n_components=3, n_features=5, seed=0)
    est = shellvae.ShellVAE("vanilla", n_clusters=3, epochs=1, latent_dim=2).fit(data.X_train)
    assert est.delta_ == est.region_.delta_
    with pytest.warns(DeprecationWarning, match="ShellVAE.delta_"):
        assert est.delta_collapse_ == est.delta_


def test_one_metrics_registry_for_both_families():
    from shellvae import metrics_for
    from shellvae.errors import ShellVAEError

    vector, sequence = ({m.name: m for m in metrics_for(f)} for f in ("vector", "sequence"))
    shared = {"kl", "mutual_info", "active_units", "probe_accuracy", "chance_accuracy"}
    for name in shared:  # registered once, one function for both
        assert vector[name] is sequence[name] is METRICS[name]
        assert METRICS.families_of(name) == ["vector", "sequence"]
    for name in ("nll_iw", "elbo"):  # each family's own estimator
        assert vector[name] is not sequence[name] and METRICS["sequence", name] is sequence[name]
        with pytest.raises(ShellVAEError, match="each have their own"):
            METRICS[name]
    assert set(vector) & set(sequence) == shared | {"nll_iw", "elbo"}
    assert all(m.doc and "\n" not in m.doc for m in (*vector.values(), *sequence.values()))
    assert list(METRICS) == list(dict.fromkeys([*vector, *sequence]))


def test_the_dataset_k_is_named_for_what_it_is_and_paper_k_warns():
    spec = shellvae.DATASETS["synthetic"]
    assert spec.default_k == 8 and shellvae.DATASETS["mnist"].default_k == 10
    with pytest.warns(DeprecationWarning, match="default_k"):
        assert spec.paper_k == 8
    with pytest.warns(DeprecationWarning, match="default_k"):
        shellvae.register_dataset("paper_k_for_the_test", "a test dataset", paper_k=3)(lambda *a, **k: None)
    try:
        assert shellvae.DATASETS["paper_k_for_the_test"].default_k == 3
    finally:
        shellvae.DATASETS.remove("paper_k_for_the_test")
