"""Your own networks in ShellVAE, and certificates for VAEs that shellvae did not train (issue 13).

The encoder and decoder here are written in the test, not taken from shellvae.core.model.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from shellvae import (
    ARCHITECTURES, METHODS, FeasibleRegion, ShellVAE, ShellVAEError, certify_model, make_gmm, register_architecture,
)
from tests.conftest import REPO

LATENT = 4


class Encoder(nn.Module):
    """A residual block with LayerNorm and two heads: returns the pair (mu, logvar)."""

    def __init__(self, n_features: int = 32, latent_dim: int = LATENT, width: int = 64):
        super().__init__()
        self.stem = nn.Linear(n_features, width)
        self.block = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU())
        self.mu, self.logvar = nn.Linear(width, latent_dim), nn.Linear(width, latent_dim)

    def forward(self, x):
        h = self.stem(x)
        h = h + self.block(h)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim: int = LATENT, n_features: int = 32, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, width), nn.GELU(), nn.Linear(width, n_features))

    def forward(self, z):
        return self.net(z)


def networks(seed: int = 0, **kwargs) -> dict:
    torch.manual_seed(seed)
    return {"encoder": Encoder(**kwargs), "decoder": Decoder(**{k: v for k, v in kwargs.items() if k != "n_features"})}


@pytest.fixture(scope="module")
def gmm():
    return make_gmm(3_000, seed=0)  # 2,400 training rows, 600 held out


FAST = dict(latent_dim=LATENT, n_clusters=8, epochs=1, batch_size=256)


# -- the contract, checked before training -------------------------------------------------------------
class Counting(nn.Module):
    """Wraps a module and counts its calls in training mode (a training step calls it; the check does not)."""

    def __init__(self, module):
        super().__init__()
        self.module, self.train_calls = module, 0

    def forward(self, x):
        self.train_calls += self.training
        return self.module(x)


@pytest.mark.parametrize("encoder, decoder, names", [
    (nn.Linear(32, 6), nn.Linear(LATENT, 32), ["encoder (Linear)", "(8, 6)", f"(8, {2 * LATENT})"]),
    (Encoder(latent_dim=3), nn.Linear(LATENT, 32), ["encoder (Encoder)", "(8, 3)", f"({8}, {LATENT})"]),
    (nn.Linear(32, 2 * LATENT), nn.Linear(LATENT, 31), ["decoder (Counting)", "(8, 31)", "(8, 32)"]),
    (nn.Linear(32, 2 * LATENT), nn.Sequential(nn.Linear(LATENT, 32), nn.Unflatten(1, (2, 16))),
     ["decoder (Counting)", "(8, 2, 16)", "nn.Flatten()"]),
    (nn.Linear(20, 2 * LATENT), nn.Linear(LATENT, 32), ["encoder (Linear) failed", "(8, 32)", "mat1 and mat2"]),
    (nn.Linear(32, 2 * LATENT).double(), nn.Linear(LATENT, 32), ["encoder (Linear) failed"]),
])
def test_a_broken_contract_is_named_before_training(gmm, encoder, decoder, names):
    decoder = Counting(decoder)
    est = ShellVAE("shell", encoder=encoder, decoder=decoder, **FAST)
    with pytest.raises(ShellVAEError) as info:
        est.fit(gmm.X_train)
    for name in names:
        assert name in str(info.value), str(info.value)
    assert decoder.train_calls == 0 and not hasattr(est, "history_")  # no training step was taken


def test_encoder_output_as_one_tensor_or_a_pair_gives_the_same_model(gmm):
    class Halves(nn.Module):  # the same encoder, its output as one (B, 2d) tensor
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            return torch.cat(self.encoder(x), dim=-1)

    pair = networks()
    one = {"encoder": Halves(copy.deepcopy(pair["encoder"])), "decoder": copy.deepcopy(pair["decoder"])}
    a = ShellVAE("shell", **pair, **FAST).fit(gmm.X_train)
    b = ShellVAE("shell", **one, **FAST).fit(gmm.X_train)
    np.testing.assert_array_equal(a.transform(gmm.X_test), b.transform(gmm.X_test))


# -- every method trains with them ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def vanilla_latents(gmm):
    return ShellVAE("vanilla", **networks(), **FAST).fit(gmm.X_train[:600]).transform(gmm.X_test)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_with_your_networks(gmm, method, vanilla_latents):
    params = {"max_inner_steps": 3} if method == "aggressive" else None
    est = ShellVAE(method, method_params=params, **networks(), **FAST).fit(gmm.X_train[:600])
    assert np.isfinite(est.history_[-1]["train_loss"])
    Z = est.transform(gmm.X_test)
    assert Z.shape == (len(gmm.X_test), LATENT)
    assert est.custom_networks and type(est.model_.decoder) is Decoder
    # the method's own objective trained these networks: same seed and data, another result than vanilla's
    assert (method == "vanilla") == np.array_equal(Z, vanilla_latents)


@pytest.mark.parametrize("method", ["shell", "shell_lagrange"])
def test_your_networks_are_certified_on_the_mixture(gmm, method):
    est = ShellVAE(method, **networks(), latent_dim=LATENT, n_clusters=8, epochs=10).fit(gmm.X_train)
    cert = est.certify(gmm.X_test)
    assert cert.certified, str(cert)
    assert cert.l_clu_shuffled > cert.l_clu  # the control: other rows' latents lose the advantage


def test_fit_trains_copies_and_leaves_your_modules_as_they_were(gmm):
    nets = networks()
    before = {k: v.clone() for k, v in nets["encoder"].state_dict().items()}
    a = ShellVAE("shell", **nets, **FAST).fit(gmm.X_train)
    assert all(torch.equal(before[k], v) for k, v in nets["encoder"].state_dict().items())
    assert a.model_.encoder is not nets["encoder"]
    b = ShellVAE("shell", **nets, **FAST).fit(gmm.X_train)  # so a refit starts from the same weights
    np.testing.assert_array_equal(a.transform(gmm.X_test), b.transform(gmm.X_test))


# -- save and load ----------------------------------------------------------------------------------
def test_save_and_load_with_your_modules_passed_again(gmm, tmp_path):
    est = ShellVAE("shell_lagrange", **networks(), **FAST).fit(gmm.X_train)
    est.save(tmp_path / "model.pt")
    loaded = ShellVAE.load(tmp_path / "model.pt", **networks(seed=1))  # other initial weights: replaced on load
    np.testing.assert_array_equal(loaded.transform(gmm.X_test), est.transform(gmm.X_test))
    assert loaded.method_.multiplier == est.method_.multiplier
    assert loaded.certify(gmm.X_test) == est.certify(gmm.X_test)


def test_loading_your_model_needs_the_modules_and_the_right_ones(gmm, tmp_path):
    ShellVAE("shell", **networks(), **FAST).fit(gmm.X_train).save(tmp_path / "model.pt")
    with pytest.raises(ShellVAEError, match=r"your own networks \(Encoder, Decoder\).*pass them again"):
        ShellVAE.load(tmp_path / "model.pt")
    with pytest.raises(ShellVAEError, match=re.escape("encoder.stem.weight saved (64, 32), built (16, 32)")):
        ShellVAE.load(tmp_path / "model.pt", **networks(width=16))
    wrong = {"encoder": nn.Linear(32, 2 * LATENT), "decoder": Decoder()}
    with pytest.raises(ShellVAEError, match="missing from the file: encoder.bias, encoder.weight; not in the model "
                                            "built here: encoder.block"):
        ShellVAE.load(tmp_path / "model.pt", **wrong)


def test_a_registered_architecture_is_saved_and_rebuilt_by_name(gmm, tmp_path):
    @register_architecture("test_resmlp")
    def factory(input_dim, latent_dim, encoder_hidden=(64,)):
        return Encoder(input_dim, latent_dim, encoder_hidden[0]), Decoder(latent_dim, input_dim, encoder_hidden[0])

    try:
        est = ShellVAE("shell", arch="test_resmlp", encoder_hidden=(24,), **FAST).fit(gmm.X_train)
        assert est.model_.encoder.stem.out_features == 24  # the factory got the setting it names
        est.save(tmp_path / "model.pt")
        loaded = ShellVAE.load(tmp_path / "model.pt")  # no modules: the name rebuilds them
        np.testing.assert_array_equal(loaded.transform(gmm.X_test), est.transform(gmm.X_test))
    finally:
        ARCHITECTURES.remove("test_resmlp")
    with pytest.raises(ShellVAEError, match="arch='test_resmlp': choose one of"):
        ShellVAE.load(tmp_path / "model.pt")  # its factory is gone: the file brings no code


# -- certify_model: any VAE ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(gmm):
    return ShellVAE("shell", **networks(), latent_dim=LATENT, n_clusters=8, epochs=10).fit(gmm.X_train)


def test_certify_model_equals_shellvae_certify_on_the_same_weights(gmm, trained):
    model = trained.model_.eval()
    cert = certify_model(model.encode, model.decode, gmm.X_test, shell=trained.shell_, geometry=trained.geometry_)
    assert cert == trained.certify(gmm.X_test)
    assert cert.certified and cert.l_clu_sampled is not None


def plain_loop(X: torch.Tensor, region: FeasibleRegion | None = None, epochs: int = 10, sigma2: float = 0.5):
    """A VAE trained by a plain PyTorch loop (not shellvae's); with ``region``, X are its shell rows
    and the loss adds the region's penalties."""
    nets = networks()
    encoder, decoder = nets["encoder"], nets["decoder"]
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(128):
            x = X[idx]
            mu, logvar = encoder(x)
            xhat = decoder(mu + torch.randn(mu.shape, generator=gen) * (0.5 * logvar).exp())
            loss = ((x - xhat).pow(2).sum(-1).mean() / (2 * sigma2)
                    + 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean())
            if region is not None:
                l_clu = region.cluster_loss(xhat, region.centers(idx))
                loss = (loss + 10 * region.boundary_penalty(l_clu, 0.05 * region.delta_)
                        + 10 * region.norm_penalty(xhat))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return encoder.eval(), decoder.eval()


def test_a_plain_pytorch_loop_is_certified_as_shellvae_certifies_the_same_weights(gmm):
    region = FeasibleRegion(8).fit(gmm.X_train)
    encoder, decoder = plain_loop(torch.as_tensor(region.transform(gmm.X_train), dtype=torch.float32), region)
    cert = certify_model(encoder, decoder, gmm.X_test, shell=region.shell_, geometry=region.geometry_)
    assert cert.certified, str(cert)

    # the same weights in a ShellVAE with the same shell and geometry
    est = ShellVAE("shell", encoder=Encoder(), decoder=Decoder(), **FAST).fit(gmm.X_train, geometry=region.geometry_)
    est.model_.encoder.load_state_dict(encoder.state_dict())
    est.model_.decoder.load_state_dict(decoder.state_dict())
    assert est.certify(gmm.X_test) == cert


def test_a_constant_decoder_is_not_certified(gmm, trained):
    model = trained.model_.eval()
    centre = torch.as_tensor(trained.geometry_.centers_[0], dtype=torch.float32)  # any constant will do
    for space, output in (("shell", centre), ("data", torch.as_tensor(gmm.X_train.mean(0)))):
        encode = model.encode if space == "shell" else (lambda x: torch.zeros(len(x), LATENT))
        cert = certify_model(encode, lambda z, a=output: a.expand(len(z), -1), gmm.X_test, shell=trained.shell_,
                             geometry=trained.geometry_, space=space)
        assert not cert.certified
        # a constant a (in shell space) scores the floor plus its distance to the rows' mean centre, exactly
        a = output.numpy() if space == "shell" else trained.shell_.transform(output.numpy()[None].astype(np.float64))[0]
        X_shell = trained.shell_.transform(gmm.X_test)
        mean_centre = trained.geometry_.centers_[trained.geometry_.predict(X_shell)].mean(0)
        assert cert.l_clu == pytest.approx(cert.collapse_floor + float(np.sum((a - mean_centre) ** 2)), rel=1e-4)
        assert cert.l_clu_shuffled == pytest.approx(cert.l_clu)


def test_an_encoder_of_means_only_gives_the_same_verdict_without_the_sampled_controls(gmm, trained):
    model = trained.model_.eval()
    args = dict(shell=trained.shell_, geometry=trained.geometry_)
    full = certify_model(model.encode, model.decode, gmm.X_test, **args)
    means = certify_model(lambda x: model.encode(x)[0], model.decode, gmm.X_test, **args)
    assert (means.certified, means.l_clu, means.l_clu_shuffled, means.active_units) == (
        full.certified, full.l_clu, full.l_clu_shuffled, full.active_units)
    assert means.kl is None and means.mutual_info is None and means.l_clu_sampled is None
    assert "no log-variances" in str(means) and "KL = n/a" in str(means)


def test_a_data_space_model_equals_itself_composed_with_the_shell_maps(gmm, trained):
    """space='data' means: shell rows go back through the shell's inverse, outputs onto the shell."""
    encoder, decoder = plain_loop(torch.as_tensor(gmm.X_train), epochs=5, sigma2=1.0)  # of the raw data, no shell
    shell, geometry = trained.shell_, trained.geometry_
    in_data = certify_model(encoder, decoder, gmm.X_test, shell=shell, geometry=geometry, space="data")

    def encode_shell(x):  # the same model, as one that takes and gives shell rows
        return encoder(torch.as_tensor(shell.inverse_transform(x.double().numpy()), dtype=torch.float32))

    def decode_shell(z):
        return torch.as_tensor(shell.transform(decoder(z).double().numpy()), dtype=torch.float32)

    assert certify_model(encode_shell, decode_shell, gmm.X_test, shell=shell, geometry=geometry) == in_data
    assert in_data.certified, str(in_data)  # a working VAE of the raw data


def test_certify_model_checks_what_it_is_given(gmm, trained):
    model = trained.model_.eval()
    args = dict(shell=trained.shell_, geometry=trained.geometry_)
    with pytest.raises(ShellVAEError, match=r"encode returned \(8, 4\), \(8, 3\)"):
        certify_model(lambda x: (model.encode(x)[0], model.encode(x)[1][:, :3]), model.decode, gmm.X_test, **args)
    with pytest.raises(ShellVAEError, match="encode failed on data-space rows"):
        certify_model(nn.Linear(5, 4), model.decode, gmm.X_test, space="data", **args)
    with pytest.raises(ShellVAEError, match="geometry= must be"):
        certify_model(model.encode, model.decode, gmm.X_test, shell=trained.shell_, geometry=None)
    with pytest.raises(ShellVAEError, match="X has 5 features, but the fitted shell is expecting 32"):
        certify_model(model.encode, model.decode, gmm.X_test[:, :5], **args)


# -- pythae (docs/custom_models.md's example, when pythae is installed) -------------------------------
def test_the_pythae_example_of_the_docs_runs():
    pytest.importorskip("pythae")
    text = (REPO / "docs" / "custom_models.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "pythae" in b]
    assert len(blocks) == 1
    namespace: dict = {"__name__": "__main__"}  # as a script: pythae's trainer pickles the Decoder class by value
    exec(compile(blocks[0], "docs/custom_models.md (pythae)", "exec"), namespace)
    assert namespace["cert"].certified
