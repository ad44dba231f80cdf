"""``ShellVAE``: the whole pipeline behind a scikit-learn style estimator.

    data -> SphericalShell -> ClusterGeometry -> GaussianVAE + method -> train -> metrics

``__init__`` stores hyperparameters only; ``fit`` learns ``region_`` (with its ``shell_`` and
``geometry_``), ``model_``, ``method_``, ``sigma2_``, ``lambda_max_``, ``W_``, ``delta_``
and ``history_``. The networks are shellvae's (``arch``: a registered architecture) or the user's
own (``encoder=``, ``decoder=``; the contract is in ``core.model`` and docs/custom_models.md).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from sklearn.base import TransformerMixin
from torch import nn

from shellvae.training.batches import MemmapTrainData, TrainData
from shellvae.evaluation.certificate import REGION_MARGIN_SHARE, Certificate, certify
from shellvae.errors import ShellVAEError, is_out_of_memory
from shellvae.core.geometry import N_CLUSTERS, ClusterGeometry
from shellvae.training.methods import Objective
from shellvae.evaluation.likelihood import IW_SAMPLES_PER_EPOCH, VECTOR_IW_SAMPLES
from shellvae.evaluation.metrics import cluster_sq_distances, encode_all, evaluate
from shellvae.base import model_file, storage
from shellvae.base.deprecation import deprecated_attribute
from shellvae.estimators.base import VAEEstimator, load_weights
from shellvae.estimators.checks import check_checkpoint, check_networks, check_shell_vae_params
from shellvae.core.model import DECODER_HIDDEN, ENCODER_HIDDEN, LATENT_DIM, GaussianVAE, build_vae, check_contract
from shellvae.core.region import FeasibleRegion
from shellvae.core.shell import R_MAX, R_MIN, ShellView, SphericalShell
from shellvae.training.loop import train
from shellvae.base.validation import check_array, check_n_features, check_scalar, row_chunks


class ShellVAE(TransformerMixin, VAEEstimator):
    """A VAE trained on spherical-shell data with a cluster-aware non-collapse certificate.

    Parameters
    ----------
    method : str or Method
        Name of a registered method ("shell", "vanilla", ...; see ``METHODS``) or a ``Method`` instance.
    method_params : dict, optional
        Hyperparameters of the named method, e.g. ``{"lambda_b": 5.0}``.
    latent_dim : int
        Latent dimension d.
    n_clusters : int or "auto"
        K of the cluster geometry; "auto" picks the smallest K of the auto grid whose
        region is at least ``auto_margin`` (5%) of T wide (``ClusterGeometry``).
    sigma2 : float, optional
        Fixed decoder variance; if None, ``sigma2_ratio * lambda_max`` of the shell data.
    sigma2_ratio : float
        Decoder variance as a multiple of lambda_max (2.0 = the paper's moderate violating
        condition; vanilla VAEs collapse above 1 / beta).
    beta : float
        KL weight (methods may schedule it).
    epochs : int
        Training epochs.
    batch_size : int
        Rows per optimisation step.
    lr : float
        Adam's step size.
    r_min, r_max : float
        Inner and outer radius of the shell (see ``SphericalShell``).
    radius : str
        How norms map to radii: "minmax" or "rank".
    arch : str
        A registered architecture (``ARCHITECTURES``): "mlp" (any flat data), "conv" (images;
        needs ``image_shape``), or a name added with ``register_architecture``. Ignored when
        ``encoder`` and ``decoder`` are given.
    encoder, decoder : torch.nn.Module, optional
        Your own networks (give both). The encoder maps a float32 batch of shell-space rows
        (B, D) to (mu, logvar), a tuple of two (B, latent_dim) tensors or one (B, 2 * latent_dim)
        tensor; the decoder maps (B, latent_dim) to (B, D). Checked on the first rows before
        training. ``fit`` trains copies (``model_.encoder``, ``model_.decoder``): the modules
        given stay as they are, so fitting twice starts from the same weights.
    encoder_hidden, decoder_hidden : tuple of int
        MLP widths (passed to a registered architecture's factory if it names them).
    image_shape : tuple of int, optional
        (channels, height, width) of image rows, for ``arch="conv"``.
    random_state : int
        Seed of everything (K-means, initialisation, batches, noise, metrics).
    device : str
        Torch device for training ("cpu", "cuda", ...).
    eval_every : int
        Held-out metrics every this many epochs (when ``fit`` gets ``X_val``).
    checkpoint : str, optional
        Path of an atomic per-epoch checkpoint; ``resume=True`` continues from it.
    resume : bool
        Continue from ``checkpoint`` if it exists.
    progress : bool
        Show a progress bar.
    compile : bool or str
        ``torch.compile`` the forward and the loss as one graph; True, or a mode of
        ``COMPILE_MODES`` ("reduce-overhead": CUDA graphs, for small nets on a GPU).
    amp : bool
        bf16 autocast of the forward on CUDA (no effect elsewhere).
    zero_norm : str
        "error" or "fixed", for samples equal to the training mean (see ``SphericalShell``).
    certificate_margin : float
        The certificate's margin as a share of delta: certified iff held-out
        L_clu < min(delta, collapse floor) - certificate_margin * delta. The same for every method
        (a method's own training margin, e.g. ``eps_ratio``, does not change it).

    Notes
    -----
    A ``np.memmap`` X (e.g. ``np.load(path, mmap_mode="r")``) is never loaded whole: it is checked
    and the shell fitted in chunks, the cluster geometry streams over its rows when they would
    take more than ``geometry.STREAM_BYTES`` as float64 (or always, with
    ``fit(X, geometry=ClusterGeometry(K, kmeans="streaming"))``), and training reads it batch by
    batch (``batches.MemmapTrainData``). Under ``torchrun`` training is data-parallel and the
    geometry is fitted on rank 0 only (``shellvae.base.distributed``).
    """

    file_kind = "model"
    margin_hint = "It is a share of delta; 0.05 asks the decoder to recover 5% of the between-cluster variance."
    unsaved_params = ("encoder", "decoder")
    tuple_params = ("encoder_hidden", "decoder_hidden", "image_shape")

    def __init__(
        self,
        method="shell",
        *,
        method_params: dict | None = None,
        latent_dim: int = LATENT_DIM,
        n_clusters: int | str = N_CLUSTERS,
        sigma2: float | None = None,
        sigma2_ratio: float = 2.0,
        beta: float = 1.0,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        r_min: float = R_MIN,
        r_max: float = R_MAX,
        radius: str = "minmax",
        arch: str = "mlp",
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        encoder_hidden=ENCODER_HIDDEN,
        decoder_hidden=DECODER_HIDDEN,
        image_shape=None,
        random_state: int = 0,
        device: str = "cpu",
        eval_every: int = 1,
        checkpoint: str | None = None,
        resume: bool = False,
        progress: bool = False,
        compile: bool = False,
        amp: bool = False,
        zero_norm: str = "error",
        certificate_margin: float = REGION_MARGIN_SHARE,
    ):
        self._store_hyperparameters(locals())

    # -- fitting ------------------------------------------------------------------------------
    def _check_own_params(self) -> None:
        check_shell_vae_params(self)

    @property
    def custom_networks(self) -> bool:
        """Whether the networks are the user's own modules (``encoder=``, ``decoder=``)."""
        return self.encoder is not None

    def fit(self, X, y=None, *, X_val=None, geometry: ClusterGeometry | None = None) -> "ShellVAE":
        """Fit shell, geometry and VAE on X (N, D). ``X_val`` (held-out rows) adds per-epoch metrics.

        ``geometry``: a ``ClusterGeometry`` to use instead of ``ClusterGeometry(n_clusters,
        random_state=random_state)``. Unfitted, a copy of it is fitted here with its settings (e.g.
        ``kmeans="streaming"``); fitted, it is used as it is (no K-means is run), and it must
        have been fitted on this X's shell coordinates, ``SphericalShell(r_min, r_max,
        radius=radius).fit_transform(X)``, row for row. Either way its ``n_clusters`` must be
        this estimator's.
        """
        self.check_params()
        memmap = X if isinstance(X, np.memmap) else None  # never loaded whole: checked, fitted and trained in chunks
        # dtype=None keeps floats as given: the shell centres them in float64, before any rounding to float32
        X = check_array(X, "X", min_samples=2, dtype=None, allow_constant=False)
        if X_val is not None:
            X_val = check_array(X_val, "X_val", dtype=None)
            check_n_features(X_val, "X_val", X.shape[1], type(self).__name__)
        self.method_ = self.build_method()
        torch.manual_seed(self.random_state)
        model = self._build_model(X.shape[1]).to(self.device)
        # the contract, on a dry forward of the first rows (their shapes are those of the shell rows), before
        # K-means and training: a wrong network fails in a second, whatever the data's size
        check_contract(model, torch.as_tensor(np.asarray(X[:8]), dtype=torch.float32, device=self.device))
        region = FeasibleRegion(self.n_clusters, r_min=self.r_min, r_max=self.r_max, radius=self.radius,
                                zero_norm=self.zero_norm, random_state=self.random_state)
        self._set_region(region.fit(memmap if memmap is not None else X, geometry=geometry))
        self.method_.check_region(self.region_)
        self.sigma2_ = float(self.sigma2 if self.sigma2 is not None else self.sigma2_ratio * self.lambda_max_)
        self.n_features_in_ = X.shape[1]
        self.model_ = self.method_.prepare(model).to(self.device)
        if self.resume and Path(self.checkpoint).exists():
            check_checkpoint(self)
        if memmap is not None:
            data = MemmapTrainData.build(memmap, self.region_, self.method_, self.device)
        else:
            data = TrainData.build(self.region_.transform(X), self.region_, self.method_, self.device)
        validate = None
        if X_val is not None:
            X_val_shell = self._shell_rows(X_val)
            log_det, outside = self._data_space_terms(X_val)

            def validate(model):
                return evaluate(model, X_val_shell, self.region_, sigma2=self.sigma2_, iw_samples=IW_SAMPLES_PER_EPOCH,
                                log_det=log_det, outside_norm_range=outside, seed=self.random_state)
        self.history_ = train(
            self.model_, self.method_, data, self._objective(), epochs=self.epochs, batch_size=self.batch_size,
            lr=self.lr, seed=self.random_state, validate=validate, eval_every=self.eval_every,
            checkpoint=self.checkpoint, resume=self.resume, progress=self.progress, compile=self.compile, amp=self.amp,
        )
        return self

    def _set_region(self, region: FeasibleRegion) -> None:
        self.region_, self.shell_, self.geometry_ = region, region.shell_, region.geometry_
        self.lambda_max_ = self.geometry_.lambda_max_
        self.W_, self.delta_ = region.W_, region.delta_

    #: the released name of ``delta_`` (the region's, the geometry files' and the records' ``delta``)
    delta_collapse_ = deprecated_attribute("delta_collapse_", "delta_")

    def _build_model(self, input_dim: int) -> GaussianVAE:
        if self.custom_networks:  # copies: the user's modules keep their weights, and a refit starts afresh
            return GaussianVAE(copy.deepcopy(self.encoder), copy.deepcopy(self.decoder), self.latent_dim)
        try:
            return build_vae(self.arch, input_dim, self.latent_dim, encoder_hidden=self.encoder_hidden,
                             decoder_hidden=self.decoder_hidden, image_shape=self.image_shape)
        except (MemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc):
                raise
            raise ShellVAEError(
                f"out of memory building the {self.arch} network for {input_dim} features (encoder_hidden="
                f"{self.encoder_hidden}, decoder_hidden={self.decoder_hidden}, latent_dim={self.latent_dim}): its "
                "layers do not fit in memory. Give smaller encoder_hidden / decoder_hidden.") from None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float32"]  # latents are float32, whatever X's dtype
        return tags

    def _objective(self) -> Objective:
        return Objective(sigma2=self.sigma2_, beta=self.beta, region=self.region_)

    # -- using a fitted model -----------------------------------------------------------------
    def _shell_rows(self, X):
        """X's shell coordinates: a float32 tensor, or for a memory map a ``ShellView`` read batch by batch."""
        if isinstance(X, np.memmap):
            X = check_array(X, "X", dtype=None)  # checked in chunks, still mapped
            check_n_features(X, "X", self.n_features_in_, type(self).__name__)
            return ShellView(X, self.shell_)
        X = check_array(X, "X", dtype=None)
        check_n_features(X, "X", self.n_features_in_, type(self).__name__)
        return torch.as_tensor(self.shell_.transform(X), dtype=torch.float32)

    def transform(self, X) -> np.ndarray:
        """Posterior means E_q[z | x], (N, latent_dim)."""
        self._check_fitted()
        mu, _ = encode_all(self.model_, self._shell_rows(X))
        return mu.cpu().numpy()

    def inverse_transform(self, Z) -> np.ndarray:
        """Decode latents to data space (through the shell's inverse)."""
        self._check_fitted()
        Z = check_array(Z, "Z")
        check_n_features(Z, "Z", self.latent_dim, "the decoder (latent_dim)")
        Z = torch.as_tensor(Z, dtype=torch.float32, device=self.device)
        with torch.no_grad():
            xhat = self.model_.decode(Z).cpu().numpy()
        return self.shell_.inverse_transform(xhat)

    def reconstruct(self, X) -> np.ndarray:
        """Reconstructions in data space, decoded from the posterior mean."""
        return self.inverse_transform(self.transform(X))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        """n samples from the prior, decoded to data space."""
        self._check_fitted()
        check_scalar(n, "n", integer=True)
        check_scalar(seed, "seed", integer=True, low_open=False)
        z = torch.randn(n, self.latent_dim, generator=torch.Generator().manual_seed(seed))
        return self.inverse_transform(z.numpy())

    def evaluate(self, X, y=None, *, iw_samples: int = VECTOR_IW_SAMPLES) -> dict:
        """Every held-out metric of docs/method.md §6 on X (data space; a memory map is read batch by
        batch): KL, active units, MI, the likelihood (``elbo``, ``nll_iw`` with ``iw_samples``
        importance samples per row, ``nll_iw_data``), reconstruction and cluster metrics, and with
        class labels ``y`` the probes (``probe_accuracy``, ``knn_accuracy``, ``chance_accuracy``)."""
        self._check_fitted()
        check_scalar(iw_samples, "iw_samples", integer=True)
        if y is not None and len(y) != len(X):
            raise ShellVAEError(f"y has {len(y)} labels for {len(X)} rows of X: give one label per row.")
        log_det, outside = self._data_space_terms(X)
        return evaluate(self.model_, self._shell_rows(X), self.region_, y=y, sigma2=self.sigma2_,
                        iw_samples=iw_samples, log_det=log_det, outside_norm_range=outside, seed=self.random_state)

    def _data_space_terms(self, X) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Per-row log|det J| of the shell map and whether the row is outside the training norm range
        (None, None when the map has no Jacobian at some row: a row at the training mean)."""
        try:
            parts = [(self.shell_.log_abs_det_jacobian(block), self.shell_.outside_norm_range(block))
                     for _, block in row_chunks(X)]
        except ShellVAEError:
            return None, None
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def cluster_sq_distances(self, X) -> np.ndarray:
        """||xhat_i - mu_c(i)||^2 of each row of X (data space), decoding the posterior mean: the
        per-row values behind ``evaluate(X)["l_clu"]`` (the coverage figure's histogram)."""
        self._check_fitted()
        return cluster_sq_distances(self.model_, self._shell_rows(X), self.region_)

    def default_eps(self) -> float:
        """The certificate margin used when none is given: ``certificate_margin * delta``, the same
        for every method."""
        self._check_fitted()
        return self.certificate_margin * self.delta_

    def certify(self, X, eps: float | None = None, *, metrics: dict | None = None) -> Certificate:
        """Whether held-out X proves the model is not collapsed (see ``metrics.Certificate``).

        ``eps`` defaults to ``default_eps()``. ``metrics``: this model's ``evaluate(X)`` result,
        if already computed, so the held-out pass is not run twice.
        """
        self._check_fitted()
        eps = self.default_eps() if eps is None else eps
        check_scalar(eps, "eps", low_open=False)
        return certify(self.evaluate(X) if metrics is None else metrics, self.region_, eps)

    # -- the saved file (the shared record: ``VAEEstimator.save``) --------------------------------
    def _fitted_record(self) -> dict:
        custom = None  # the user's modules: their weights are saved, their code is not (load takes them again)
        if self.custom_networks:
            custom = {"encoder": type(self.encoder).__name__, "decoder": type(self.decoder).__name__}
        return {"custom": custom, "fitted": {"sigma2_": self.sigma2_, "n_features_in_": self.n_features_in_},
                "shell": storage.to_safe(self.shell_.state_dict()),
                "geometry": storage.to_safe(self.geometry_.state_dict())}

    @classmethod
    def load(cls, path, device: str = "cpu", *, encoder: nn.Module | None = None,
             decoder: nn.Module | None = None) -> "ShellVAE":
        """Load a model saved by ``save``. The file holds weights and settings, never code: a model
        trained with your own ``encoder`` and ``decoder`` needs them again here (the same classes and
        sizes; their weights are replaced by the saved ones), one trained with a registered ``arch``
        needs that name registered. Weights that do not fit get an error naming the keys and shapes."""
        return super().load(path, device, encoder=encoder, decoder=decoder)

    @classmethod
    def _check_record(cls, record: dict, path, modules: dict) -> None:
        custom = record.get("custom")
        given = any(module is not None for module in modules.values())
        if custom and not given:
            raise ShellVAEError(
                f"{path}: this model was trained with your own networks ({custom['encoder']}, {custom['decoder']}). "
                "Loading never runs code from the file, so pass them again: ShellVAE.load(path, encoder=..., "
                "decoder=...), built as for training (or register a factory with shellvae.register_architecture "
                "and train with arch=NAME)."
            )
        if given and not custom:
            raise ShellVAEError(f"{path}: this model uses shellvae's arch={record['params'].get('arch')!r}; load it "
                                "without encoder= and decoder=.")

    def _restore_fitted(self, record: dict, path) -> None:
        check_networks(self)
        self.sigma2_, self.n_features_in_ = record["fitted"]["sigma2_"], record["fitted"]["n_features_in_"]
        shell = SphericalShell.from_state_dict(storage.from_safe(record["shell"]))
        geometry = ClusterGeometry.from_state_dict(storage.from_safe(record["geometry"]))
        self.shell_, self.geometry_ = shell, geometry  # checked before the region is built from them
        model_file.check_fitted(self)
        self._set_region(FeasibleRegion.from_fitted(geometry, shell))
        self.model_ = self.method_.prepare(self._build_model(self.n_features_in_))
        custom = record["custom"]
        load_weights(self.model_, record["model"], path,
                     f"the encoder and decoder given (trained: {custom['encoder']}, {custom['decoder']})" if custom
                     else f"arch={self.arch!r}")
        width = (self.n_features_in_,)
        if np.shape(self.shell_.mean_) != width or np.shape(self.geometry_.centers_)[1:] != width:
            raise ShellVAEError(f"{path}: its shell or cluster centres do not have the model's "
                                f"{self.n_features_in_} features; the file was altered. Retrain the model.")
        self.model_.to(self.device)
