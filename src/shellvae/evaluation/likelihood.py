"""Held-out likelihood of a Gaussian VAE: the ELBO and the importance-weighted bound (docs/method.md §6).

The model, for rows x in R^D (shell coordinates, for shellvae's own models):

    q(z|x) = N(mu(x), diag exp(logvar(x))),   p(z) = N(0, I_d),   p(x|z) = N(decode(z), sigma2 I_D)

with a *fixed* decoder variance ``sigma2`` (it is part of the objective, not of the model).
Every function takes the two callables ``encode(x) -> (mu, logvar)`` and ``decode(z) -> xhat``
rather than a shellvae class, so any Gaussian VAE can be scored (``model.encode``,
``model.decode``). Put the model in ``eval()`` mode first; the functions run under ``no_grad``.

- ``elbo``: per-row  E_q[log p(x|z)] - KL(q(z|x) || p(z)), the expectation estimated with
  ``n_samples`` reparameterised draws and the KL in closed form. Mean over rows = the held-out
  ELBO in nats per sample.
- ``iw_log_likelihood``: per-row importance-weighted bound (Burda, Grosse & Salakhutdinov 2016,
  "Importance Weighted Autoencoders", eq. 8)

      log p_K(x) = logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,   z_k ~ q(z|x),

  a lower bound on log p(x) whose expectation increases with K to log p(x) (their Theorem 1);
  K = 1 is the ELBO (with a sampled KL). ``nll_iw = -iw_log_likelihood(...).mean()``.
- ``data_log_likelihood``: log p(x) in data space from the shell-space value and the shell
  map's log|det J| (``SphericalShell.log_abs_det_jacobian``), so models trained on different
  shells can be compared: log p_X(x) = log p_X~(f(x)) + log|det J_f(x)|.

Results are per-row float64 tensors on the compute device (mean them for the metric). The draws
come from one ``torch.Generator`` (seeded 0 when none is given, so metrics are reproducible),
batch by batch and decode chunk by chunk: for fixed arguments the result is the same bit for bit,
but changing ``batch_size`` or ``max_decode_rows`` changes the draws (the bounds' values only
within their Monte Carlo noise).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from shellvae.errors import ShellVAEError

Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Decoder = Callable[[torch.Tensor], torch.Tensor]

#: final metrics. The bound's gap to log p(x) shrinks like O(1/K) (Burda et al. 2016); its cost
#: is measured by bench/iw_time.py (docs/performance.md)
VECTOR_IW_SAMPLES = 500
#: importance samples per held-out sequence for a sequence model's final metrics. He et al. 2019 use
#: 500; measured on the generated corpus (a free-bits model, 500 held-out sequences) the bound's NLL
#: was 25.95 at K = 50, 25.84 at 100 and 25.69 at 500 nats (s.e. over the sequences 0.29), at 1/5 of
#: the cost
SEQUENCE_IW_SAMPLES = 100
#: a per-epoch curve (both families): 50x cheaper than the final metrics, the same trend
IW_SAMPLES_PER_EPOCH = 10

#: decoded values (rows x features) and rows held at once, by default. On a CPU a chunk that stays
#: in cache is fastest (a 32-dim MLP decoder: 1.0 us per decoded row at 4,096 rows a chunk, 2.2 us
#: at 65,536; MNIST: 4.6 us at 1,024 rows, 8.5 us at 21,000); on an accelerator bigger chunks keep
#: it busy, and memory stays bounded (2**24 float32 = 64 MiB of output; the row cap bounds the
#: hidden activations of a decoder with few outputs: 65,536 x 256 floats).
CPU_DECODE_ELEMENTS, CPU_DECODE_ROWS = 2**20, 4096
DEVICE_DECODE_ELEMENTS, DEVICE_DECODE_ROWS = 2**24, 2**16

_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, sigma2: float) -> torch.Tensor:
    """log N(x; mean, sigma2 I) over the last dim, float64: -||x - mean||^2 / (2 sigma2) - (D/2) log(2 pi sigma2).

    ``mean`` broadcasts against ``x`` (e.g. (S, B, D) decoded samples against (B, D) rows). The
    squared distance is summed in the inputs' dtype (the decoder's precision bounds it anyway) and
    promoted to float64 before it is scaled, so large values keep their sub-nat digits.
    """
    sq = (x - mean).pow(2).sum(dim=-1).double()
    return -sq / (2.0 * sigma2) - 0.5 * x.shape[-1] * (_LOG_2PI + math.log(sigma2))


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag e^logvar) || N(0, I)) per row, float64: (1/2) sum_j (mu_j^2 + e^logvar_j - 1 - logvar_j)."""
    mu, logvar = mu.double(), logvar.double()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def _check_sigma2(sigma2: float) -> float:
    if isinstance(sigma2, bool) or not isinstance(sigma2, (int, float, np.floating, np.integer)):
        raise ShellVAEError(f"sigma2={sigma2!r}: the decoder variance must be a positive number.")
    sigma2 = float(sigma2)
    if not (math.isfinite(sigma2) and sigma2 > 0):
        raise ShellVAEError(f"sigma2={sigma2}: the decoder variance must be a positive, finite number.")
    return sigma2


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ShellVAEError(f"{name}={value!r}: must be a positive integer.")
    return int(value)


def default_decode_rows(n_features: int, device) -> int:
    """Rows decoded at once by default: (2**20 / D, at most 4,096) on a CPU, (2**24 / D, at most 65,536) elsewhere."""
    if torch.device(device).type == "cpu":
        return min(CPU_DECODE_ROWS, max(1, CPU_DECODE_ELEMENTS // n_features))
    return min(DEVICE_DECODE_ROWS, max(1, DEVICE_DECODE_ELEMENTS // n_features))


def _decode_chunk(n_samples: int, x: torch.Tensor, max_decode_rows: int | None) -> int:
    """How many samples of the batch x to decode in one call: max_decode_rows // B, at least 1."""
    n_rows, n_features = x.shape
    if max_decode_rows is None:
        max_decode_rows = default_decode_rows(n_features, x.device)
    return max(1, min(n_samples, _check_count(max_decode_rows, "max_decode_rows") // n_rows))


def _encoded(encode: Encoder, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, logvar = encode(x)
    if mu.shape != logvar.shape or mu.ndim != 2 or len(mu) != len(x):
        raise ShellVAEError(
            f"encode returned mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} for {len(x)} rows; "
            "expected two (n_rows, latent_dim) tensors."
        )
    return mu, logvar


def _decoded(decode: Decoder, z: torch.Tensor, n_features: int) -> torch.Tensor:
    xhat = decode(z)
    if xhat.shape != (len(z), n_features):
        raise ShellVAEError(
            f"decode returned shape {tuple(xhat.shape)} for {len(z)} codes; expected ({len(z)}, {n_features})."
        )
    return xhat


def posterior_draws(mu: torch.Tensor, logvar: torch.Tensor, n_samples: int, chunk: int,
                    generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(e, z) for z = mu + e * exp(logvar / 2) ~ q(z|x), ``chunk`` samples at a time, (s, B, d) each: the
    draws of every importance-weighted estimate, for vectors and sequences alike."""
    std = (0.5 * logvar).exp()
    for start in range(0, n_samples, chunk):
        s = min(chunk, n_samples - start)
        eps = torch.randn((s, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
        yield eps, mu + eps * std


def log_prior_minus_log_posterior(z: torch.Tensor, eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log p(z) - log q(z|x) of draws z = mu + e * s (s = exp(logvar / 2)), (s, B) float64:
    -(1/2) sum_j (z_j^2 - e_j^2 - logvar_j) (the log(2 pi) terms cancel), computed from e itself rather
    than (z - mu) / s, which would lose digits when s is tiny."""
    return -0.5 * (z.double().pow(2) - eps.double().pow(2) - logvar.double()).sum(dim=-1)


def iw_bound(log_weights: torch.Tensor, n_samples: int) -> torch.Tensor:
    """log p_K(x) = logsumexp_k log w_k - log K from the (K, B) log weights (Burda et al. 2016, eq. 8)."""
    return torch.logsumexp(log_weights, dim=0) - math.log(n_samples)


def _posterior_draws(
    encode: Encoder, decode: Decoder, x: torch.Tensor, n_samples: int, generator: torch.Generator,
    max_decode_rows: int | None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """(mu, logvar, e, z, xhat) for z ~ q(z|x) (``posterior_draws``), a chunk of samples at a time.

    mu, logvar: (B, d), the encoding of x; e, z: (chunk, B, d); xhat = decode(z): (chunk, B, D).
    A chunk's samples are decoded as one (chunk * B, d) batch, vectorised, of at most
    ``max_decode_rows`` rows (but one sample at least).
    """
    n_samples = _check_count(n_samples, "n_samples")
    mu, logvar = _encoded(encode, x)
    n_rows, n_features = x.shape
    for eps, z in posterior_draws(mu, logvar, n_samples, _decode_chunk(n_samples, x, max_decode_rows), generator):
        xhat = _decoded(decode, z.reshape(len(z) * n_rows, -1), n_features).reshape(len(z), n_rows, n_features)
        yield mu, logvar, eps, z, xhat


@torch.no_grad()
def sample_log_weights(
    encode: Encoder,
    decode: Decoder,
    x: torch.Tensor,
    sigma2: float,
    n_samples: int,
    *,
    generator: torch.Generator,
    max_decode_rows: int | None = None,
) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x) for z_k ~ q(z|x): (n_samples, B) float64.

    The latent terms: ``log_prior_minus_log_posterior``.
    """
    sigma2 = _check_sigma2(sigma2)
    parts = []
    for _, logvar, eps, z, xhat in _posterior_draws(encode, decode, x, n_samples, generator, max_decode_rows):
        log_px_z = gaussian_log_density(x, xhat, sigma2)  # (chunk, B)
        parts.append(log_px_z + log_prior_minus_log_posterior(z, eps, logvar))
    return torch.cat(parts)


@torch.no_grad()
def iw_log_likelihood_batch(
    encode: Encoder,
    decode: Decoder,
    x: torch.Tensor,
    sigma2: float,
    n_samples: int = VECTOR_IW_SAMPLES,
    *,
    generator: torch.Generator,
    max_decode_rows: int | None = None,
) -> torch.Tensor:
    """log p_K(x) = logsumexp_k log w_k - log K for one batch of rows (B,), float64 (Burda et al. 2016, eq. 8)."""
    log_w = sample_log_weights(encode, decode, x, sigma2, n_samples, generator=generator,
                               max_decode_rows=max_decode_rows)
    return iw_bound(log_w, n_samples)


@torch.no_grad()
def elbo_batch(
    encode: Encoder,
    decode: Decoder,
    x: torch.Tensor,
    sigma2: float,
    n_samples: int = 1,
    *,
    generator: torch.Generator,
    max_decode_rows: int | None = None,
) -> torch.Tensor:
    """ELBO per row (B,), float64: (1/n) sum_k log p(x|z_k) - KL(q(z|x) || N(0, I)), z_k ~ q(z|x).

    The KL is exact (closed form), so only the reconstruction term is estimated: lower variance
    than the K = 1 importance-weighted bound, which has the same expectation.
    """
    sigma2 = _check_sigma2(sigma2)
    total = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for mu, logvar, _, _, xhat in _posterior_draws(encode, decode, x, n_samples, generator, max_decode_rows):
        total += gaussian_log_density(x, xhat, sigma2).sum(dim=0)
    return total / n_samples - kl_to_standard_normal(mu, logvar)


def _row_batches(X, batch_size: int, device, dtype) -> Iterator[torch.Tensor]:
    """Consecutive batches of X's rows as tensors: X a tensor, an array (a memory map too), or an object
    whose ``chunks(n)`` yields (start, rows) (a ``shell.ShellView``, transforming rows as they are read)."""
    if not isinstance(X, (torch.Tensor, np.ndarray)) and hasattr(X, "chunks"):
        blocks = (rows for _, rows in X.chunks(batch_size))
    else:
        blocks = (X[start:start + batch_size] for start in range(0, len(X), batch_size))
    for rows in blocks:
        rows = rows if isinstance(rows, torch.Tensor) else torch.as_tensor(np.asarray(rows))
        yield rows.to(device=device, dtype=dtype)


def _setup(X, sigma2, n_samples, batch_size, generator, device, dtype):
    """Check the arguments; the device, dtype and generator the computation runs with."""
    sigma2 = _check_sigma2(sigma2)
    n_samples, batch_size = _check_count(n_samples, "n_samples"), _check_count(batch_size, "batch_size")
    shape = tuple(X.shape) if hasattr(X, "shape") else np.shape(X)
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ShellVAEError(f"X has shape {shape}; expected (n_rows, n_features) with at least one of each.")
    if device is None:
        device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    if dtype is None:  # a floating tensor keeps its precision; arrays go to float32, the models' dtype
        dtype = X.dtype if isinstance(X, torch.Tensor) and X.dtype.is_floating_point else torch.float32
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    return sigma2, n_samples, batch_size, generator, device, dtype


@torch.no_grad()
def iw_log_likelihood(
    encode: Encoder,
    decode: Decoder,
    X,
    sigma2: float,
    *,
    n_samples: int = VECTOR_IW_SAMPLES,
    batch_size: int = 1024,
    max_decode_rows: int | None = None,
    generator: torch.Generator | None = None,
    device=None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Importance-weighted lower bound log p_K(x) for every row of X: (N,) float64 on ``device``.

    log p_K(x) = logsumexp_{k=1..K} [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K, z_k ~ q(z|x)
    (Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders"; docs/method.md §6).
    E[log p_K(x)] <= log p(x), increasing in K; ``nll_iw = -result.mean()`` in nats per sample.

    X: (N, D) rows like those the model was trained on (shell coordinates for shellvae's models): a
    tensor, an array (a memory map is read a batch at a time) or a ``ShellView`` (anything with
    ``chunks(n)`` yielding (start, rows)). ``batch_size`` rows are encoded at once and their
    ``n_samples`` draws decoded in chunks of at most ``max_decode_rows`` rows (at least one sample
    of the batch; default ``default_decode_rows``: cache-sized on a CPU, 64 MiB of output on a GPU),
    so memory stays bounded for any K. ``device``: where to compute (default: X's
    device, else the CPU); ``dtype``: the rows' dtype for the model (default: X's, float32 for arrays).
    """
    sigma2, n_samples, batch_size, generator, device, dtype = _setup(
        X, sigma2, n_samples, batch_size, generator, device, dtype)
    return torch.cat([
        iw_log_likelihood_batch(encode, decode, x, sigma2, n_samples, generator=generator,
                                max_decode_rows=max_decode_rows)
        for x in _row_batches(X, batch_size, device, dtype)
    ])


@torch.no_grad()
def elbo(
    encode: Encoder,
    decode: Decoder,
    X,
    sigma2: float,
    *,
    n_samples: int = 1,
    batch_size: int = 1024,
    max_decode_rows: int | None = None,
    generator: torch.Generator | None = None,
    device=None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """ELBO of every row of X: (N,) float64, E_q[log p(x|z)] - KL(q(z|x) || N(0, I)) (docs/method.md §6).

    The expectation is estimated with ``n_samples`` reparameterised draws per row (1 by default:
    the mean over N held-out rows already averages the noise away), the KL is exact. The mean
    over rows is the held-out ELBO in nats per sample. Arguments as in ``iw_log_likelihood``.
    """
    sigma2, n_samples, batch_size, generator, device, dtype = _setup(
        X, sigma2, n_samples, batch_size, generator, device, dtype)
    return torch.cat([
        elbo_batch(encode, decode, x, sigma2, n_samples, generator=generator, max_decode_rows=max_decode_rows)
        for x in _row_batches(X, batch_size, device, dtype)
    ])


def data_log_likelihood(shell_log_likelihood, log_det_jacobian):
    """log p(x) in data space from log p(x~) in shell space, x~ = f(x): log p(x~) + log|det J_f(x)|.

    The change of variables for the shell map f (``SphericalShell.log_abs_det_jacobian``), so
    that -log p(x) = nll_iw - log|det J| is comparable across models trained on different shells
    (docs/method.md §6). Tensors or arrays of per-row values, same length; returns float64 of the
    first argument's kind.
    """
    if len(shell_log_likelihood) != len(log_det_jacobian):
        raise ShellVAEError(
            f"{len(shell_log_likelihood)} log-likelihoods but {len(log_det_jacobian)} log-determinants: "
            "pass the values of the same rows (the shell rows and the data rows they came from)."
        )
    if isinstance(shell_log_likelihood, torch.Tensor):
        logdet = torch.as_tensor(log_det_jacobian, dtype=torch.float64, device=shell_log_likelihood.device)
        return shell_log_likelihood.double() + logdet
    return np.asarray(shell_log_likelihood, dtype=np.float64) + np.asarray(log_det_jacobian, dtype=np.float64)
