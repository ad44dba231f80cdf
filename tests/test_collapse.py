"""The known outcome behind the paper (docs/method.md §5, §8): at sigma^2 = 2 lambda_max, beta = 1, the
vanilla VAE collapses on the synthetic mixture while the shell VAE keeps information and is certified."""

import pytest

from shellvae import ShellVAE, make_gmm


@pytest.fixture(scope="module")
def outcomes():
    data = make_gmm(8_000, seed=0)
    results = {}
    for method in ("vanilla", "shell"):
        est = ShellVAE(method, n_clusters=8, sigma2_ratio=2.0, beta=1.0, epochs=20, random_state=0).fit(data.X_train)
        results[method] = (est, est.evaluate(data.X_test), est.certify(data.X_test))
    return results


def test_sigma2_is_twice_lambda_max(outcomes):
    est, _, _ = outcomes["vanilla"]
    assert est.sigma2_ == pytest.approx(2.0 * est.lambda_max_)
    assert 0.15 < est.lambda_max_ < 0.25  # docs/method.md §8: the prototype measured ~0.19


def test_vanilla_collapses(outcomes):
    _, metrics, cert = outcomes["vanilla"]
    assert metrics["kl"] < 0.05 and metrics["active_units"] == 0
    assert not cert.certified
    assert metrics["l_clu"] >= metrics["collapse_floor"] - 0.01  # no better than a constant output


def test_shell_keeps_information_and_is_certified(outcomes):
    _, metrics, cert = outcomes["shell"]
    assert metrics["kl"] > 0.3 and metrics["active_units"] >= 3
    assert cert.feasible and cert.certified
    assert metrics["l_clu"] < cert.delta - cert.eps
    # the control: decoding other samples' latents loses the advantage
    assert metrics["l_clu_shuffled"] > cert.delta
