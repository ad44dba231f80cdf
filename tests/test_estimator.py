"""ShellVAE: scikit-learn conventions, determinism, persistence, resume, input errors."""

import numpy as np
import pytest
import torch

from shellvae import Shell, ShellVAE, ShellVAEError
from shellvae.training.methods import base

FAST = dict(n_clusters=8, epochs=3, random_state=0)


@pytest.fixture(scope="module")
def data():
    from shellvae import make_gmm

    return make_gmm(3_000, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    return ShellVAE("shell", **FAST).fit(data.X_train, X_val=data.X_test)


def test_init_stores_parameters_only():
    est = ShellVAE("vanilla", latent_dim=4, beta=2.0)
    assert est.get_params()["latent_dim"] == 4 and est.get_params()["beta"] == 2.0
    assert not any(k.endswith("_") for k in vars(est))
    assert "latent_dim=4" in repr(est)


def test_fit_returns_self_and_learns_state(data):
    est = ShellVAE("vanilla", **FAST)
    assert est.fit(data.X_train) is est
    for attr in ("shell_", "geometry_", "model_", "method_", "sigma2_", "lambda_max_", "W_", "delta_",
                 "history_"):
        assert hasattr(est, attr)
    assert len(est.history_) == 3 and est.W_ == est.geometry_.W_


def test_outputs_have_the_right_shapes(fitted, data):
    X = data.X_test[:50]
    assert fitted.transform(X).shape == (50, 8)
    assert fitted.reconstruct(X).shape == X.shape
    assert fitted.sample(7).shape == (7, X.shape[1])
    row = fitted.history_[-1]
    for key in ("train_nll", "train_kl", "train_l_clu", "train_l_b", "train_l_n", "train_loss", "val_kl",
                "val_active_units", "val_l_clu", "val_feasible_coverage", "val_norm_satisfaction", "val_mutual_info"):
        assert np.isfinite(row[key]), key


def test_same_seed_gives_bit_identical_results(data):
    a = ShellVAE("shell", **FAST).fit(data.X_train, X_val=data.X_test)
    b = ShellVAE("shell", **FAST).fit(data.X_train, X_val=data.X_test)
    assert a.history_ == [{**r, "train_time_s": s["train_time_s"], "eval_time_s": s["eval_time_s"]}
                          for r, s in zip(b.history_, a.history_)]
    np.testing.assert_array_equal(a.transform(data.X_test), b.transform(data.X_test))


def test_save_load_round_trip(fitted, data, tmp_path):
    path = tmp_path / "model.pt"
    fitted.save(path)
    loaded = ShellVAE.load(path)
    np.testing.assert_array_equal(loaded.transform(data.X_test), fitted.transform(data.X_test))
    assert loaded.certify(data.X_test) == fitted.certify(data.X_test)
    assert loaded.get_params() == fitted.get_params()


def test_load_refuses_foreign_and_corrupt_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ShellVAEError, match="not a readable"):
        ShellVAE.load(bad)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ShellVAEError, match="not a shellvae file"):
        ShellVAE.load(tmp_path / "other.pt")
    with pytest.raises(ShellVAEError, match="no such file"):
        ShellVAE.load(tmp_path / "missing.pt")


def test_resume_reaches_the_uninterrupted_parameters(data, tmp_path, monkeypatch):
    params = dict(n_clusters=8, epochs=5, random_state=0)
    reference = ShellVAE("shell", **params).fit(data.X_train)

    ckpt = tmp_path / "ckpt.pt"
    original = base.Method.after_epoch

    def interrupt(self, row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt  # dies during epoch 3: the checkpoint holds epoch 2
        original(self, row)

    monkeypatch.setattr(base.Method, "after_epoch", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ShellVAE("shell", checkpoint=str(ckpt), **params).fit(data.X_train)
    monkeypatch.setattr(base.Method, "after_epoch", original)
    resumed = ShellVAE("shell", checkpoint=str(ckpt), resume=True, **params).fit(data.X_train)
    assert len(resumed.history_) == 5
    for p, q in zip(reference.model_.parameters(), resumed.model_.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_method_instance_and_params(data):
    est = ShellVAE(Shell(lambda_b=1.0, eps_ratio=0.1), **FAST).fit(data.X_train)
    assert est.method_.lambda_b == 1.0
    # the certificate's margin is the certificate's, not the method's training margin (eps_ratio)
    assert est.certify(data.X_test).eps == pytest.approx(0.05 * est.delta_)
    vanilla = ShellVAE("vanilla", **FAST).fit(data.X_train)
    assert vanilla.certify(data.X_test).eps == est.certify(data.X_test).eps  # one bar for every method
    assert ShellVAE("vanilla", certificate_margin=0.2, **FAST).fit(data.X_train).certify(
        data.X_test).eps == pytest.approx(0.2 * est.delta_)
    with pytest.raises(ShellVAEError, match="bad hyperparameters"):
        ShellVAE("shell", method_params={"lambda_q": 1}, **FAST).fit(data.X_train)
    with pytest.raises(ShellVAEError, match="unknown method"):
        ShellVAE("nonsense", **FAST).fit(data.X_train)


@pytest.mark.parametrize("param, value, match", [
    ("sigma2", 0.0, "sigma2"), ("sigma2", -1.0, "sigma2"), ("sigma2_ratio", 0, "sigma2_ratio"),
    ("beta", -0.5, "beta"), ("latent_dim", 0, "latent_dim"), ("epochs", 0, "epochs"), ("lr", float("nan"), "lr"),
    ("batch_size", 2.5, "batch_size"), ("n_clusters", 1, "n_clusters"), ("r_min", 2.0, "r_min"),
])
def test_bad_parameters_are_named(param, value, match, data):
    with pytest.raises(ShellVAEError, match=match):
        ShellVAE(**{**FAST, param: value}).fit(data.X_train[:200])


def test_bad_data(data, fitted):
    X = data.X_train[:100].copy()
    X[3, 2] = np.nan
    with pytest.raises(ShellVAEError, match="NaN"):
        ShellVAE(**FAST).fit(X)
    with pytest.raises(ShellVAEError, match="2 dimensions"):
        ShellVAE(**FAST).fit(data.X_train[:, 0])
    with pytest.raises(ShellVAEError, match="features"):
        fitted.transform(data.X_test[:, :5])
    with pytest.raises(ShellVAEError, match="not fitted"):
        ShellVAE().transform(data.X_test)


def test_certify_reuses_given_metrics(fitted, data):
    metrics = fitted.evaluate(data.X_test)
    assert fitted.certify(data.X_test, metrics=metrics) == fitted.certify(data.X_test)
    assert fitted.default_eps() == pytest.approx(0.05 * fitted.delta_)


def test_zero_norm_is_an_estimator_setting(rng):
    """A training row equal to the training mean has no direction: refused by default, with the fix
    the error names (zero_norm='fixed'), which the estimator passes to its shell."""
    from shellvae import ShellVAEError

    X = rng.normal(size=(200, 4))
    X = np.vstack([X, X.mean(axis=0)])  # the mean of all 201 rows is this row
    with pytest.raises(ShellVAEError, match="zero_norm='fixed'"):
        ShellVAE("vanilla", n_clusters=3, epochs=1).fit(X)
    with pytest.warns(UserWarning, match="zero-norm"):
        est = ShellVAE("vanilla", n_clusters=3, epochs=1, zero_norm="fixed").fit(X)
    assert est.shell_.zero_norm == "fixed" and np.isfinite(est.transform(X)).all()
