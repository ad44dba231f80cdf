"""SphericalShell (docs/method.md §1): norms in the shell, directions kept, exact inverse."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from shellvae import ShellVAEError, SphericalShell

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)


def data(min_rows=3, max_rows=40, max_cols=12):
    shape = st.tuples(st.integers(min_rows, max_rows), st.integers(1, max_cols))
    return arrays(np.float64, shape, elements=finite).filter(
        lambda X: (np.linalg.norm(X - X.mean(0), axis=1) > 1e-6 * (1 + np.abs(X).max())).all()
    )


@settings(max_examples=60, deadline=None)
@given(X=data(), radius=st.sampled_from(["minmax", "rank"]), r=st.tuples(st.floats(0.1, 2), st.floats(0.01, 2)))
def test_norms_inside_shell_and_directions_kept(X, radius, r):
    r_min, r_max = r[0], r[0] + r[1]
    shell = SphericalShell(r_min, r_max, radius=radius).fit(X)
    Xs = shell.transform(X)
    norms = np.linalg.norm(Xs, axis=1)
    assert np.all(norms >= r_min - 1e-9) and np.all(norms <= r_max + 1e-9)
    Xc = X - X.mean(0)
    cos = np.sum(Xs * Xc, axis=1) / (norms * np.linalg.norm(Xc, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(X=data(), radius=st.sampled_from(["minmax", "rank"]))
def test_inverse_round_trip(X, radius):
    shell = SphericalShell(radius=radius).fit(X)
    back = shell.inverse_transform(shell.transform(X))
    np.testing.assert_allclose(back, X, atol=1e-7 * (1 + np.abs(X).max()))


def test_minmax_endpoints_hit_radii(rng):
    X = rng.normal(size=(200, 5))
    Xs = SphericalShell(0.9, 1.1).fit_transform(X)
    norms = np.linalg.norm(Xs, axis=1)
    assert norms.min() == pytest.approx(0.9) and norms.max() == pytest.approx(1.1)


def test_new_data_radii_clipped_into_shell(rng):
    X = rng.normal(size=(300, 4))
    shell = SphericalShell().fit(X)
    far = np.vstack([50 * rng.normal(size=(5, 4)), X.mean(0) + 1e-3])
    norms = np.linalg.norm(shell.transform(far), axis=1)
    assert np.all((norms >= 0.9 - 1e-12) & (norms <= 1.1 + 1e-12))
    np.testing.assert_allclose(norms[:5], 1.1)


def test_rank_mode_resists_an_outlier(rng):
    X = np.vstack([rng.normal(size=(999, 8)), 1e4 * np.ones((1, 8))])
    minmax = np.linalg.norm(SphericalShell(radius="minmax").fit_transform(X), axis=1)[:-1]
    rank = np.linalg.norm(SphericalShell(radius="rank").fit_transform(X), axis=1)[:-1]
    assert np.ptp(minmax) < 0.001  # everything squashed onto r_min
    assert np.ptp(rank) > 0.15  # radii still spread over the shell


def test_zero_norm_sample_raises_by_default(rng):
    X = rng.normal(size=(50, 3))
    shell = SphericalShell().fit(X)
    with pytest.raises(ShellVAEError, match="equal the training mean"):
        shell.transform(shell.mean_[None, :])


def test_zero_norm_fixed_direction(rng):
    X = rng.normal(size=(50, 4))
    shell = SphericalShell(zero_norm="fixed").fit(X)
    with pytest.warns(UserWarning, match="zero-norm"):
        out = shell.transform(shell.mean_[None, :])
    np.testing.assert_allclose(out[0], 0.9 * np.ones(4) / 2.0)


@pytest.mark.parametrize("radius", ["minmax", "rank"])
def test_transform_in_blocks_equals_one_block(rng, monkeypatch, radius):
    """The transform works a block of rows at a time; rows are independent, so the block size
    changes no bit, and the zero-norm rows are counted and located over all blocks."""
    X = rng.normal(size=(103, 5))
    shell = SphericalShell(radius=radius, zero_norm="fixed").fit(X)
    X_new = np.vstack([rng.normal(size=(40, 5)), shell.mean_, rng.normal(size=(30, 5)), shell.mean_])
    with pytest.warns(UserWarning, match="^2 zero-norm"):
        whole = shell.transform(X_new)
    monkeypatch.setattr("shellvae.core.shell.TRANSFORM_BYTES", 3 * 8 * 5)  # blocks of 3 rows
    with pytest.warns(UserWarning, match="^2 zero-norm"):
        blocks = shell.transform(X_new)
    np.testing.assert_array_equal(blocks, whole)
    shell.zero_norm = "error"
    with pytest.raises(ShellVAEError, match=r"^2 sample\(s\) equal the training mean \(rows \[40, 71\]"):
        shell.transform(X_new)


@pytest.mark.parametrize("kwargs", [dict(r_min=1.1, r_max=0.9), dict(r_min=0.0), dict(r_min=-1.0),
                                    dict(radius="log"), dict(zero_norm="ignore")])
def test_bad_parameters(kwargs, rng):
    with pytest.raises(ShellVAEError):
        SphericalShell(**kwargs).fit(rng.normal(size=(10, 2)))


def test_constant_data_and_wrong_dimension(rng):
    with pytest.raises(ShellVAEError, match="constant"):
        SphericalShell().fit(np.ones((10, 3)))
    shell = SphericalShell().fit(rng.normal(size=(10, 3)))
    with pytest.raises(ShellVAEError, match="features"):
        shell.transform(rng.normal(size=(4, 2)))
    with pytest.raises(ShellVAEError, match="not fitted"):
        SphericalShell().transform(np.ones((2, 2)))


def test_state_dict_round_trip(rng):
    X = rng.normal(size=(100, 6))
    for radius in ("minmax", "rank"):
        shell = SphericalShell(radius=radius).fit(X)
        again = SphericalShell.from_state_dict(shell.state_dict())
        np.testing.assert_array_equal(again.transform(X), shell.transform(X))
