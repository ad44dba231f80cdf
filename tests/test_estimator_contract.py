"""One contract, both estimators (issue 24): ``ShellVAE`` and ``SequenceVAE`` share their base
(``estimators.base.VAEEstimator``), so each passes the same tests of fitting, the saved file,
``clone``, the not-fitted error and the checks of the hyperparameters both have."""

import numpy as np
import pytest
import sklearn.exceptions
from sklearn.base import clone

from shellvae import SequenceVAE, ShellVAE, ShellVAEError, make_gmm, make_topic_corpus
from shellvae.estimators.base import VAEEstimator


def vectors():
    data = make_gmm(n_samples=240, n_components=3, n_features=6, seed=0)
    return ShellVAE("vanilla", n_clusters=3, epochs=1, latent_dim=2), data.X_train, data.X_test


def sequences():
    data = make_topic_corpus(96, 32, seed=0, n_topics=3, vocab_size=12, length=8)
    est = SequenceVAE("vanilla", latent_dim=2, embed_dim=8, hidden_dim=8, epochs=1, batch_size=32, n_clusters=3,
                      language_model=False)
    return est, data.X_train, data.X_test


FAMILIES = {"ShellVAE": vectors, "SequenceVAE": sequences}


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    est, X_train, X_test = FAMILIES[request.param]()
    return est, est.fit(X_train), X_train, X_test


def test_both_are_vae_estimators(family):
    est, _, _, _ = family
    assert isinstance(est, VAEEstimator)


def test_fit_returns_self_and_learns_a_model(family):
    est, fitted, X_train, X_test = family
    assert fitted is est and hasattr(est, "model_") and hasattr(est, "method_") and est.history_
    assert est.transform(X_test).shape == (len(X_test), est.latent_dim)


def test_save_load_round_trip(family, tmp_path):
    est, _, _, X_test = family
    est.save(tmp_path / "model.pt")
    loaded = type(est).load(tmp_path / "model.pt")
    assert np.array_equal(loaded.transform(X_test), est.transform(X_test))
    assert loaded.get_params() == est.get_params() and loaded.history_ == est.history_
    assert loaded.method_.params() == est.method_.params()


def test_load_refuses_the_other_family_s_file(family, tmp_path):
    est, _, _, _ = family
    est.save(tmp_path / "model.pt")
    other = SequenceVAE if isinstance(est, ShellVAE) else ShellVAE
    with pytest.raises(ShellVAEError):
        other.load(tmp_path / "model.pt")


def test_clone_gives_the_same_settings_unfitted(family):
    est, _, _, _ = family
    copy = clone(est)
    assert copy.get_params() == est.get_params() and not hasattr(copy, "model_")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_not_fitted_is_also_scikit_learn_s_error(name):
    est, _, X_test = FAMILIES[name]()
    for call in (lambda: est.transform(X_test), lambda: est.save("never.pt")):
        with pytest.raises(sklearn.exceptions.NotFittedError, match="not fitted"):
            call()
        with pytest.raises(ShellVAEError):
            call()


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("param, value", [
    ("latent_dim", 0), ("epochs", 0), ("batch_size", 2.5), ("eval_every", -1), ("lr", 0.0), ("lr", float("nan")),
    ("beta", -0.5), ("random_state", -1), ("certificate_margin", 2.0), ("method_params", "lambda_b=5"),
    ("method_params", {"no_such_hyperparameter": 1}), ("method", "no_such_method"), ("device", "no_such_device"),
])
def test_bad_shared_parameters_are_named_before_training(name, param, value):
    est, X_train, _ = FAMILIES[name]()
    with pytest.raises(ShellVAEError, match=param.split("_")[0] if param.startswith("method") else param):
        est.set_params(**{param: value}).fit(X_train)
    assert not hasattr(est, "model_")
