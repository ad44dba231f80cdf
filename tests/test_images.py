"""Image models and figures: the conv nets, image grids in data space, `train --arch conv --show`, `show`."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shellvae import ShellVAE, ShellVAEError
from shellvae.cli import main
from shellvae.reporting.figures import save_image_grid
from shellvae.core.model import build_vae, conv_vae


def blobs(n=240, size=8, seed=0):
    """Bright squares at one of three places: tiny images with cluster structure, pixels in [0, 1]."""
    rng = np.random.default_rng(seed)
    X = 0.05 * rng.random((n, size, size))
    for i, k in enumerate(rng.integers(0, 3, n)):
        X[i, 2 * k:2 * k + 3, 2 * k:2 * k + 3] += 0.9
    return X.astype(np.float32)


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 32, 32), (3, 8, 8)])
def test_conv_vae_shapes(shape):
    model = conv_vae(shape, latent_dim=5)
    out = model(torch.randn(4, int(np.prod(shape))))
    assert out.mu.shape == (4, 5) and out.xhat.shape == (4, int(np.prod(shape)))
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.encoder.modules()) == 2
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoder.modules()) == 2


def test_conv_errors():
    with pytest.raises(ShellVAEError, match="divisible by 4"):
        conv_vae((1, 30, 30))
    with pytest.raises(ShellVAEError, match="needs image_shape"):
        build_vae("conv", 64)
    with pytest.raises(ShellVAEError, match="does not match"):
        build_vae("conv", 65, image_shape=(1, 8, 8))
    with pytest.raises(ShellVAEError, match="arch="):
        build_vae("transformer", 64)


def test_conv_estimator_trains_and_round_trips(tmp_path):
    X = blobs().reshape(240, -1)
    est = ShellVAE("shell", arch="conv", image_shape=(1, 8, 8), n_clusters=3, epochs=2).fit(X[:200])
    est.save(tmp_path / "m.pt")
    loaded = ShellVAE.load(tmp_path / "m.pt")
    assert loaded.image_shape == (1, 8, 8)
    np.testing.assert_array_equal(loaded.transform(X[200:]), est.transform(X[200:]))


def test_image_grid_png(tmp_path):
    path = tmp_path / "grid.png"
    save_image_grid(blobs(12).reshape(12, -1), (1, 8, 8), path, n_cols=4, title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ShellVAEError, match="cannot be shown"):
        save_image_grid(np.zeros((2, 10)), (1, 8, 8), path)


def test_train_conv_show_then_show_command(tmp_path):
    np.save(tmp_path / "imgs.npy", blobs())
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "imgs.npy"), "--arch", "conv", "--show",
                                       "--n-clusters", "3", "--epochs", "2", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    for name in ("reconstructions.png", "samples.png"):
        (out / name).unlink()
    result = CliRunner().invoke(main, ["show", "--model", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "reconstructions.png").exists() and (out / "samples.png").exists()


def test_conv_on_flat_data_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["train", "--arch", "conv", "--n-train", "300", "--n-test", "100",
                                       "--out", str(tmp_path), "--quiet"])
    assert result.exit_code == 1 and "needs image data" in result.output
