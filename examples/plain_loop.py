"""Add the feasible-region constraint to your own VAE and your own PyTorch training loop.

Nothing here is shellvae's but the constraint: the VAE, the optimiser, the batches and the loss
are plain PyTorch. shellvae.FeasibleRegion, fitted once on the training data, maps rows onto the
spherical shell and gives each batch's cluster centres, L_clu, the boundary penalty and the norm
penalty (docs/method.md §3-4); shellvae.certify_model then checks the trained model on held-out
data. The same loop runs twice at the moderate violating condition (sigma^2 = 2 lambda_max,
beta = 2), with and without the constraint:

    python examples/plain_loop.py              # 20,000 samples, 30 epochs (~30 s on one core)
    python examples/plain_loop.py --lagrange   # the constraint held by a Lagrange multiplier (shell_lagrange)
    python examples/plain_loop.py --quick      # a smoke test (the tests run this)
"""

import argparse

import torch
from torch import nn

import shellvae


class VAE(nn.Module):
    """A Gaussian VAE written without shellvae: encoder -> (mu, logvar), decoder -> reconstruction."""

    def __init__(self, n_features: int, latent_dim: int = 8, hidden: int = 128):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_features))

    def encode(self, x):
        return self.encoder(x).chunk(2, dim=-1)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return mu, logvar, self.decoder(z)


def train(X, region, *, constraint: str | None, epochs: int, sigma2: float, beta: float = 2.0, seed: int = 0):
    """The whole training loop. ``constraint="penalty"``: + 10 L_b + 10 L_n, the paper's objective
    (eq. 10); ``"lagrange"``: + lambda (L_clu - (delta - eps)) + 10 L_n, lambda by dual ascent."""
    torch.manual_seed(seed)
    model = VAE(X.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # the training margin: L_clu <= delta - eps (the paper's 5% of delta; halfway from W for the multiplier)
    eps = region.eps_from_alpha(0.5) if constraint == "lagrange" else 0.05 * region.delta_
    dual = shellvae.DualAscent(lr=1.0, ema=0.9)
    for epoch in range(epochs):
        for idx in torch.randperm(len(X)).split(128):  # row indices of the training data
            x = X[idx]
            mu, logvar, xhat = model(x)
            nll = (x - xhat).pow(2).sum(-1).mean() / (2 * sigma2)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean()
            loss = nll + beta * kl
            if constraint:
                l_clu = region.cluster_loss(xhat, region.centers(idx))  # each row's centre, by its index
                loss = loss + 10 * region.norm_penalty(xhat)
                if constraint == "penalty":
                    loss = loss + 10 * region.boundary_penalty(l_clu, eps)
                else:
                    c = region.constraint(l_clu, eps)
                    loss = loss + dual.multiplier * c
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if constraint == "lagrange":
                dual.update(float(c))  # after the step, as shell_lagrange does
    return model.eval()


def main(quick: bool = False, lagrange: bool = False) -> dict:
    torch.set_num_threads(1)
    data = shellvae.make_gmm(4_000 if quick else 20_000, seed=0)
    region = shellvae.FeasibleRegion(n_clusters=8).fit(data.X_train)  # shell + cluster geometry, once
    X = torch.as_tensor(region.transform(data.X_train), dtype=torch.float32)  # the rows on the shell
    sigma2 = 2.0 * region.geometry_.lambda_max_  # the moderate violating condition, with beta = 2
    print(region)
    certificates = {}
    for constraint in (None, "lagrange" if lagrange else "penalty"):
        model = train(X, region, constraint=constraint, epochs=10 if quick else 30, sigma2=sigma2)
        cert = shellvae.certify_model(model.encode, model.decoder, data.X_test,
                                      shell=region.shell_, geometry=region.geometry_)
        name = "with the constraint" if constraint else "plain VAE"
        print(f"\n{name}: {cert}")
        certificates[name] = cert
    return certificates


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data and few epochs (a smoke test)")
    parser.add_argument("--lagrange", action="store_true", help="hold the constraint with a Lagrange multiplier")
    args = parser.parse_args()
    main(args.quick, args.lagrange)
