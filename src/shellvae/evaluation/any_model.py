"""Certify any VAE, whatever its decoder: one entry point, ``shellvae.certify_model``.

- A decoder of continuous rows (a Gaussian decoder, in shell or data space) gets the cluster-aware
  certificate: held-out L_clu below the collapse floor the cluster geometry gives
  (``certificate.certify_vector_model``, docs/method.md §3, §6).
- An autoregressive decoder of token sequences gets the language-model floor: held-out NLL
  decoding each sequence's own latent below a z-free language model's and below other sequences'
  latents, by a margin a paired test resolves (``sequence_certificate.certify_sequence_model``,
  docs/sequences.md). Pass ``lm_nll=`` (the floor), and a ``decode`` that takes ``(z, x)`` and
  returns -log p(x|z) per sequence.
"""

from __future__ import annotations

from collections.abc import Callable

from shellvae.evaluation.certificate import CollapseCertificate, certify_vector_model
from shellvae.errors import ShellVAEError
from shellvae.evaluation.sequence_certificate import certify_sequence_model


def certify_model(encode: Callable, decode: Callable, X, *, shell=None, geometry=None, lm_nll=None,
                  **options) -> CollapseCertificate:
    """The certificate of a VAE trained anywhere, on held-out ``X``.

    With ``shell`` and ``geometry`` (the fitted ``SphericalShell`` and ``ClusterGeometry``): the
    cluster-aware certificate of a model of continuous rows; ``options`` are those of
    ``certificate.certify_vector_model`` (``space``, ``eps``, ``certificate_margin``, ``device``, ...).
    With ``lm_nll`` (the z-free language model's -log p(x) per held-out sequence, or a callable):
    the language-model-floor certificate of a sequence model, ``decode(z, x)`` giving -log p(x|z)
    per sequence; ``options`` are those of ``certify_sequence_model`` (``margin``, ``alpha``, ...).
    """
    if lm_nll is not None:
        if shell is not None or geometry is not None:
            raise ShellVAEError("give shell= and geometry= (a model of continuous rows) or lm_nll= (a sequence "
                                "model's language-model floor), not both.")
        return certify_sequence_model(encode, decode, X, lm_nll=lm_nll, **options)
    if shell is None and geometry is None:
        raise ShellVAEError("certify_model needs shell= and geometry= (fitted on the training data) for a model of "
                            "continuous rows, or lm_nll= (a z-free language model's held-out NLL) for a sequence "
                            "model.")
    return certify_vector_model(encode, decode, X, shell=shell, geometry=geometry, **options)
