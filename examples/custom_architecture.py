"""ShellVAE with your own networks: a residual MLP with LayerNorm, and a deeper conv net for images.

Two ways to plug them in (docs/custom_models.md):

1. pass the modules: ``ShellVAE(encoder=..., decoder=...)``. A saved model holds their weights,
   never their code, so ``ShellVAE.load(path, encoder=..., decoder=...)`` takes them again;
2. register a factory by name: ``shellvae.register_architecture("deepconv", factory)``, then
   ``ShellVAE(arch="deepconv")``; ``ShellVAE.load(path)`` rebuilds it by name.

The contract: the encoder maps a float32 batch of shell-space rows (B, D) to (mu, logvar), two
(B, latent_dim) tensors (or one (B, 2 latent_dim) tensor); the decoder maps (B, latent_dim) to
(B, D). Images come as flat rows: the conv nets reshape them. scripts/architectures.py uses these
same networks for the architecture table (docs/results/architectures.md).

    python examples/custom_architecture.py            # the mixture (20,000 samples) and the digits: ~3 minutes
    python examples/custom_architecture.py --quick    # a smoke test (the tests run this)
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import shellvae


# -- a residual MLP with LayerNorm -------------------------------------------------------------------
class ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, h):
        return h + self.net(h)


class ResMLPEncoder(nn.Module):
    """(B, D) -> (mu, logvar): a linear stem, ``depth`` pre-norm residual blocks, two heads."""

    def __init__(self, n_features: int, latent_dim: int, width: int = 512, depth: int = 4):
        super().__init__()
        self.stem = nn.Linear(n_features, width)
        self.blocks = nn.Sequential(*(ResidualBlock(width) for _ in range(depth)), nn.LayerNorm(width))
        self.mu, self.logvar = nn.Linear(width, latent_dim), nn.Linear(width, latent_dim)

    def forward(self, x):
        h = self.blocks(self.stem(x))
        return self.mu(h), self.logvar(h)


class ResMLPDecoder(nn.Module):
    """(B, latent_dim) -> (B, D)."""

    def __init__(self, latent_dim: int, n_features: int, width: int = 512, depth: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, width), *(ResidualBlock(width) for _ in range(depth)),
                                 nn.LayerNorm(width), nn.Linear(width, n_features))

    def forward(self, z):
        return self.net(z)


# -- a deeper conv net for images (flat rows in, flat rows out) -------------------------------------------
class ConvEncoder(nn.Module):
    """(B, C*H*W) -> (B, 2 latent_dim): two stages of 3x3 conv + stride-2 4x4 conv (H, W divisible by 4)."""

    def __init__(self, image_shape, latent_dim: int, channels=(32, 64)):
        super().__init__()
        c, h, w = image_shape
        c1, c2 = channels
        self.image_shape = tuple(image_shape)
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1), nn.ReLU(), nn.Conv2d(c1, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.Conv2d(c2, c2, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), 2 * latent_dim),
        )

    def forward(self, x):
        return self.net(x.reshape(len(x), *self.image_shape))


class ConvDecoder(nn.Module):
    """(B, latent_dim) -> (B, C*H*W), the encoder mirrored with transposed convolutions."""

    def __init__(self, image_shape, latent_dim: int, channels=(32, 64)):
        super().__init__()
        c, h, w = image_shape
        c1, c2 = channels
        self.net = nn.Sequential(
            nn.Linear(latent_dim, c2 * (h // 4) * (w // 4)), nn.ReLU(), nn.Unflatten(1, (c2, h // 4, w // 4)),
            nn.ConvTranspose2d(c2, c2, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(c2, c1, 3, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c1, c1, 4, stride=2, padding=1), nn.ReLU(), nn.Conv2d(c1, c, 3, padding=1),
            nn.Flatten(),
        )

    def forward(self, z):
        return self.net(z)


def deepconv(input_dim: int, latent_dim: int, image_shape=None):
    """The factory registered as arch="deepconv": ShellVAE passes image_shape because the factory names it."""
    if image_shape is None:
        raise ValueError("arch='deepconv' needs image_shape=(channels, height, width)")
    return ConvEncoder(image_shape, latent_dim), ConvDecoder(image_shape, latent_dim)


def register() -> None:
    """Register the conv factory once (importing this file twice must not register it twice)."""
    if "deepconv" not in shellvae.ARCHITECTURES:
        shellvae.register_architecture("deepconv", deepconv, summary="a deeper conv net (examples/custom_architecture.py)")


def main(quick: bool = False) -> dict:
    torch.set_num_threads(1)
    folder = Path(tempfile.mkdtemp())
    results = {}

    # 1. a residual MLP on the paper's Gaussian mixture, passed as modules
    data = shellvae.make_gmm(4_000 if quick else 20_000, seed=0)
    D, d = data.X_train.shape[1], 8
    width = 64 if quick else 512
    torch.manual_seed(0)
    est = shellvae.ShellVAE("shell", encoder=ResMLPEncoder(D, d, width), decoder=ResMLPDecoder(d, D, width),
                            latent_dim=d, n_clusters=8, epochs=10 if quick else 30).fit(data.X_train)
    results["resmlp"] = est.certify(data.X_test)
    print(f"residual MLP on the mixture: {results['resmlp']}")
    est.save(folder / "resmlp.pt")
    # the file holds weights only: pass the modules again (built the same way; their weights are replaced)
    loaded = shellvae.ShellVAE.load(folder / "resmlp.pt", encoder=ResMLPEncoder(D, d, width),
                                    decoder=ResMLPDecoder(d, D, width))
    assert np.array_equal(loaded.transform(data.X_test), est.transform(data.X_test))

    # 2. a deeper conv net on scikit-learn's 8x8 digits, registered by name
    register()
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    train, test = order[:1_500], order[1_500:]
    conv = shellvae.ShellVAE("shell", arch="deepconv", image_shape=(1, 8, 8), latent_dim=d, n_clusters="auto",
                             epochs=2 if quick else 50).fit(X[train])
    results["deepconv"] = conv.certify(X[test])
    print(f"\ndeeper conv net on the digits (K = {conv.geometry_.n_clusters_}): {results['deepconv']}")
    conv.save(folder / "deepconv.pt")
    reloaded = shellvae.ShellVAE.load(folder / "deepconv.pt")  # rebuilt by its registered name
    assert np.array_equal(reloaded.transform(X[test]), conv.transform(X[test]))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and few epochs (a smoke test)")
    main(parser.parse_args().quick)
