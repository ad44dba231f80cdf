"""Certify a VAE that shellvae did not train.

Two VAEs are trained here by a plain PyTorch loop on the raw data (data space; shellvae is not
involved): one with the KL weight beta = 1, one with beta = 50, which makes it collapse. Then
shellvae fits the shell and the cluster geometry on the training data (the models never see them)
and certifies each model on held-out data with ``certify_model(..., space="data")``: the shell
maps the model's inputs and outputs, so the certificate is the one ``ShellVAE.certify`` gives.
A decoder that ignores z is the control: it is never certified.

    python examples/certify_external.py            # 20,000 samples, 20 epochs (~30 s on one core)
    python examples/certify_external.py --quick    # a smoke test (the tests run this)
"""

import argparse

import torch
from torch import nn

import shellvae


def train_vae(X: torch.Tensor, beta: float, epochs: int, latent_dim: int = 8, seed: int = 0):
    """A textbook Gaussian VAE (unit decoder variance) and its training loop, in data space."""
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(X.shape[1], 128), nn.ReLU(), nn.Linear(128, 2 * latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, X.shape[1]))
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
    for epoch in range(epochs):
        for idx in torch.randperm(len(X)).split(128):
            mu, logvar = encoder(X[idx]).chunk(2, dim=-1)
            xhat = decoder(mu + torch.randn_like(mu) * (0.5 * logvar).exp())
            nll = 0.5 * (X[idx] - xhat).pow(2).sum(-1).mean()
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean()
            optimizer.zero_grad()
            (nll + beta * kl).backward()
            optimizer.step()
    return encoder.eval(), decoder.eval()


def main(quick: bool = False) -> dict:
    torch.set_num_threads(1)
    data = shellvae.make_gmm(4_000 if quick else 20_000, seed=0)
    X_train = torch.as_tensor(data.X_train)
    # shellvae's part starts here: shell + cluster geometry of the training data, for the certificate only
    region = shellvae.FeasibleRegion(n_clusters=8).fit(data.X_train)

    certificates = {}
    for beta in (1.0, 50.0):
        encoder, decoder = train_vae(X_train, beta, epochs=10 if quick else 20)

        def encode(x, encoder=encoder):
            return encoder(x).chunk(2, dim=-1)  # (mu, logvar): the sampled-z control and the KL are reported too

        cert = shellvae.certify_model(encode, decoder, data.X_test, shell=region.shell_,
                                      geometry=region.geometry_, space="data")
        certificates[f"beta={beta:g}"] = cert
        print(f"\nVAE trained outside shellvae, beta = {beta:g}: {cert}")

    constant = X_train.mean(0) + 0.1  # a decoder that ignores z: the output every row gets
    cert = shellvae.certify_model(encode, lambda z: constant.expand(len(z), -1), data.X_test,
                                  shell=region.shell_, geometry=region.geometry_, space="data")
    certificates["constant decoder"] = cert
    print(f"\na decoder that ignores z: {cert}")
    return certificates


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and few epochs (a smoke test)")
    main(parser.parse_args().quick)
