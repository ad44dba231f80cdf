"""``SequenceVAE``: sequence VAEs behind a scikit-learn style estimator, like ``ShellVAE``.

    token ids (N, T) -> LSTM encoder -> z -> autoregressive decoder (+ z at every step) -> logits
                     -> method (from the registry) -> the one training loop -> metrics, certificate

``__init__`` stores hyperparameters only; ``fit`` learns ``model_``, ``method_``, ``lm_`` (the
z-free language model of the same architecture: the collapse floor of the certificate) and
``lm_info_`` (how that floor was trained), ``region_`` (the shell methods' ``SequenceRegion``),
``vocab_size_``, ``length_``, ``history_``, ``n_epochs_`` and ``best_epoch_``.

Trained to convergence: with ``patience`` set (the default), ``epochs`` is a maximum; training
stops once the held-out negative ELBO has not improved for ``patience`` epochs, the step halves
on each epoch without improvement, and the best epoch's weights are kept (``training.loop.EarlyStopping``).

The floor follows its own recipe, never the model under test's (``FLOOR_RECIPE``): no word
dropout, up to ``FLOOR_RECIPE["max_epochs"]`` epochs with early stopping on its held-out NLL, the
VAE's architecture, data and batch size. A floor from elsewhere (``fit(lm=...)``,
``certify(lm_nll=...)``) that is weaker than that recipe, or of unknown provenance, is refused
unless the caller passes ``allow_weaker_floor=True``, and the certificate then says so.
"""

from __future__ import annotations

import numpy as np
import torch

from shellvae.base import model_file, storage
from shellvae.training.batches import TrainData
from shellvae.errors import DataError, ShellVAEError
from shellvae.estimators.base import VAEEstimator, load_weights, weights
from shellvae.estimators.sequence_text import TextOutput
from shellvae.training.methods import Objective
from shellvae.evaluation.sequence_certificate import (LM_FLOOR_MARGIN_SHARE, PAIRED_TEST_ALPHA, SequenceCertificate,
                                           certify_sequence_model)
from shellvae.data.sequences import BOS, EOS, N_SPECIAL, PAD, Vocabulary
from shellvae.data.text import check_tokens
from shellvae.evaluation.likelihood import IW_SAMPLES_PER_EPOCH, SEQUENCE_IW_SAMPLES
from shellvae.evaluation.sequence_metrics import elbo, evaluate_sequences
from shellvae.core.sequence_model import DECODERS, LanguageModel, language_model, sequence_vae, token_nll
from shellvae.core.sequence_region import SequenceRegion
from shellvae.evaluation.bag_metrics import certify_region, region_metrics
from shellvae.training.loop import EarlyStopping, train
from shellvae.base.validation import check_scalar
from shellvae.estimators.sequence_floor import (FLOOR_RECIPE, REL_DELTA, VALIDATION_SHARE, accept_floor, fingerprint,
                                                floor_to_certify, hold_out, train_floor)


class SequenceVAE(TextOutput, VAEEstimator):
    """A VAE on token sequences with an autoregressive decoder and a language-model-floor certificate.

    Parameters
    ----------
    method : str or Method
        A registered method ("vanilla", "free_bits", "bn_vae", "aggressive", ...; the shell methods
        use the ``SequenceRegion``), as for ``ShellVAE``.
    method_params : dict, optional
        The method's hyperparameters, e.g. ``{"free_bits": 0.25}``.
    latent_dim : int
        Latent dimension d.
    decoder : str
        "lstm" (z concatenated to the input at every step) or "transformer" (a 2-layer causal
        Transformer, z added at every position).
    embed_dim, hidden_dim : int
        Token embedding width; LSTM state width (encoder and LSTM decoder).
    word_dropout : float
        Probability of replacing each decoder input token by ``<unk>`` in training (Bowman et al. 2016).
    beta : float
        KL weight (methods may schedule it).
    epochs : int
        The most epochs to train (the number trained without ``patience``).
    patience : int or None
        Early stopping: stop when the held-out negative ELBO per sequence (1 sampled z, exact KL,
        fixed noise) has not improved by more than 0.1% for this many epochs (validations, with
        ``eval_every`` > 1), and keep the best epoch's weights; the step halves on each epoch
        without improvement. The held-out rows are ``fit``'s ``X_val``,
        or else a seeded 10% of X (then trained on the other 90%). The negative ELBO, not an
        importance-weighted NLL: one decoder pass a sequence against K, and it is the quantity
        training lowers, so its plateau is training's. None: train ``epochs`` epochs on all of X.
        The defaults (30 epochs at most, patience 3) are chosen for about 10,000 short quotations
        (the fortunes corpus) with the default network; ``n_epochs_ < epochs`` says a run stopped
        by itself, ``n_epochs_ == best_epoch_ == epochs`` that it was still improving.
    batch_size, lr : int, float
        Sequences per step, Adam's step size.
    n_clusters : int
        K of the bag-of-tokens clusters (shell methods only).
    language_model : bool
        Train the z-free language model of the same architecture on the same data in ``fit`` (the
        certificate's floor), with its own recipe (``FLOOR_RECIPE``: no word dropout, early
        stopping on its held-out NLL), never this model's word dropout, epochs or method.
    certificate_margin : float
        The certificate's margin as a share of the language model's held-out NLL.
    certificate_alpha : float
        The level of the certificate's one-sided paired tests.
    vocab_size : int, optional
        Number of token ids (default: the largest id in the training data + 1).
    random_state : int
        Seed of everything (initialisation, batches, noise, metrics).
    device : str
        Torch device.
    eval_every : int
        Held-out metrics every this many epochs (when ``fit`` gets ``X_val``).
    progress : bool
        Show progress bars: training (the VAE's, then the one labelled "language-model floor") and
        the held-out NLL in ``evaluate``.
    """

    file_kind = "sequence_model"
    lr_hint = "Adam's step for these small nets: 5e-3."
    margin_high = 0.99
    margin_hint = "It is a share of the language model's NLL; 0.01 = 1%."

    def __init__(self, method="free_bits", *, method_params: dict | None = None, latent_dim: int = 16,
                 decoder: str = "lstm", embed_dim: int = 64, hidden_dim: int = 128, word_dropout: float = 0.0,
                 beta: float = 1.0, epochs: int = 30, patience: int | None = 3, batch_size: int = 64,
                 lr: float = 5e-3, n_clusters: int = 16,
                 language_model: bool = True, certificate_margin: float = LM_FLOOR_MARGIN_SHARE,
                 certificate_alpha: float = PAIRED_TEST_ALPHA, vocab_size: int | None = None, random_state: int = 0,
                 device: str = "cpu", eval_every: int = 1, progress: bool = False):
        self._store_hyperparameters(locals())

    # -- fitting ------------------------------------------------------------------------------
    def _check_own_params(self) -> None:
        for name in ("embed_dim", "hidden_dim"):
            check_scalar(getattr(self, name), name, integer=True)
        check_scalar(self.n_clusters, "n_clusters", integer=True, low=2, low_open=False)
        if self.patience is not None:
            check_scalar(self.patience, "patience", integer=True,
                         fix="Epochs without improvement before stopping; None trains every epoch.")
        check_scalar(self.word_dropout, "word_dropout", low_open=False, high=1.0, fix="Bowman et al. use 0.25-0.5.")
        check_scalar(self.certificate_alpha, "certificate_alpha", high=0.5, fix="The tests' level; 0.01 by default.")
        if self.vocab_size is not None:
            check_scalar(self.vocab_size, "vocab_size", integer=True, low=N_SPECIAL + 1, low_open=False)
        if self.decoder not in DECODERS:
            raise ShellVAEError(f"decoder={self.decoder!r}: choose one of {', '.join(DECODERS)}.")
        if self.decoder == "transformer" and self.embed_dim % 4:
            raise ShellVAEError(f"embed_dim={self.embed_dim}: the Transformer decoder's 4 heads need a multiple of 4.")
        if not isinstance(self.language_model, bool):
            raise ShellVAEError(f"language_model={self.language_model!r}: give True or False.")

    def _architecture(self) -> dict:
        return dict(decoder=self.decoder, embed_dim=self.embed_dim, hidden_dim=self.hidden_dim,
                    word_dropout=self.word_dropout)

    def _build(self):
        model = sequence_vae(self.vocab_size_, self.length_, self.latent_dim, bag_output=self.region_ is not None,
                             **self._architecture())
        return self.method_.prepare(model)

    def _build_lm(self) -> LanguageModel:
        return language_model(self.vocab_size_, self.length_, self.latent_dim,
                              **{**self._architecture(), "word_dropout": FLOOR_RECIPE["word_dropout"]})

    def fit(self, X, y=None, *, X_val=None, lm: LanguageModel | SequenceVAE | None = None,
            vocab: Vocabulary | None = None, allow_weaker_floor: bool = False) -> SequenceVAE:
        """Train on token rows X (N, T) (``y`` is ignored). ``X_val``: held-out rows for per-epoch
        metrics and early stopping (without it, a seeded 10% of X is held out when needed: see
        ``patience``). ``lm``: the floor of another fit on the same X (its ``lm_``, or the
        ``SequenceVAE`` itself) instead of training one; one trained otherwise than ``FLOOR_RECIPE``
        (word dropout, no early stopping, not converged, other data, unknown provenance) is refused
        unless ``allow_weaker_floor=True``. ``vocab``: the ``Vocabulary`` of the ids (kept, for
        decoding samples)."""
        self.check_params()
        X = check_tokens(X, "X", min_samples=2)
        if X_val is not None:
            X_val = check_tokens(X_val, "X_val", min_samples=2)
        if not isinstance(allow_weaker_floor, bool):
            raise ShellVAEError(f"allow_weaker_floor={allow_weaker_floor!r}: give True or False.")
        self.vocab_ = vocab
        self.vocab_size_ = int(self.vocab_size or (len(vocab) if vocab is not None else max(X.max() + 1, N_SPECIAL + 1)))
        self.length_ = X.shape[1]
        for name, rows in (("X", X), ("X_val", X_val)):
            if rows is not None and rows.max() >= self.vocab_size_:
                raise DataError(f"{name} holds token id {rows.max()} but the vocabulary has {self.vocab_size_} ids.")
        if X_val is not None and self.decoder == "transformer" and X_val.shape[1] > self.length_:
            raise DataError(f"X_val has length {X_val.shape[1]}; the Transformer is built for X's {self.length_}.")
        # the rows early stopping watches: the caller's X_val, or else a seeded share of X, which the VAE (with
        # patience) and the floor then do not train on
        X_train, X_stop = X, X_val
        if X_val is None:
            X_train, X_stop = hold_out(X, VALIDATION_SHARE, self.random_state)
        vae_rows = X if self.patience is None and X_val is None else X_train
        self.method_ = self.build_method()
        self.region_ = None
        if self.method_.needs_centers:  # on the rows trained on: a batch's centres are looked up by their index
            self.region_ = SequenceRegion(self.n_clusters, vocab_size=self.vocab_size_,
                                          random_state=self.random_state).fit(vae_rows)
            self.method_.check_region(self.region_)
        torch.manual_seed(self.random_state)
        self.model_ = self._build().to(self.device)
        data = TrainData(torch.as_tensor(vae_rows, device=self.device), self.region_)
        objective = Objective(sigma2=None, beta=self.beta, region=self.region_, reconstruction=token_nll)
        validate = None
        if X_val is not None or self.patience is not None:
            def validate(model):
                metrics = {"neg_elbo": self._neg_elbo(model, X_stop)}
                if X_val is not None:  # the caller asked for held-out metrics every eval_every epochs
                    metrics.update(self._metrics(model, X_val, iw_samples=IW_SAMPLES_PER_EPOCH, lm=None))
                return metrics
        stopping = None if self.patience is None else EarlyStopping(monitor="neg_elbo", patience=self.patience,
                                                                  rel_delta=REL_DELTA)
        self.history_ = train(self.model_, self.method_, data, objective, epochs=self.epochs,
                              batch_size=self.batch_size, lr=self.lr, seed=self.random_state, validate=validate,
                              eval_every=self.eval_every, progress=self.progress, early_stopping=stopping)
        self.n_epochs_ = len(self.history_)
        self.best_epoch_ = next((row["epoch"] for row in self.history_ if row.get("best")), self.n_epochs_)
        self.lm_, self.lm_info_, self.lm_history_ = None, None, []
        if lm is not None:
            info = lm.lm_info_ if isinstance(lm, SequenceVAE) else getattr(lm, "info", None)
            lm = lm.lm_ if isinstance(lm, SequenceVAE) else lm
            self.lm_, self.lm_info_ = accept_floor(lm, info, self._build_lm(), fingerprint(X), allow_weaker_floor)
            self.lm_.to(self.device)
        elif self.language_model:
            torch.manual_seed(self.random_state)
            self.lm_, self.lm_info_, self.lm_history_ = train_floor(
                self._build_lm().to(self.device), X_train, X_stop, architecture=self._architecture(),
                batch_size=self.batch_size, seed=self.random_state, device=self.device, progress=self.progress,
                data=fingerprint(X))
        return self

    def _neg_elbo(self, model, X) -> float:
        """The VAE's early-stopping monitor: mean negative ELBO per sequence on X (1 sampled z with fixed noise,
        exact KL)."""
        gen = torch.Generator(device=self.device).manual_seed(self.random_state)
        with _eval_mode(model):
            return float(-elbo(model.encode, model.log_likelihood, X, generator=gen, device=self.device).mean())

    # -- using a fitted model -----------------------------------------------------------------
    def _rows(self, X, name: str = "X") -> np.ndarray:
        X = check_tokens(X, name, min_samples=1)
        if X.max() >= self.vocab_size_:
            raise DataError(f"{name} holds token id {X.max()} but the model knows {self.vocab_size_} ids.")
        if self.decoder == "transformer" and X.shape[1] > self.length_:
            raise DataError(f"{name} has length {X.shape[1]}; the Transformer decoder was built for {self.length_}.")
        return X

    @torch.no_grad()
    def transform(self, X) -> np.ndarray:
        """Posterior means E_q[z | x], (N, latent_dim)."""
        self._check_fitted()
        X = torch.as_tensor(self._rows(X))
        with _eval_mode(self.model_):
            parts = [self.model_.encode(X[i:i + 1024].to(self.device))[0] for i in range(0, len(X), 1024)]
        return torch.cat(parts).cpu().numpy()

    def _metrics(self, model, X, *, iw_samples, lm, oracle=None, topics=None, progress: bool = False) -> dict:
        extra = None
        if self.region_ is not None:
            def extra(mu, partner):
                return region_metrics(model.z_only_bag, X, mu, partner, self.region_)
        with _eval_mode(model), _eval_mode(lm):
            return evaluate_sequences(model.encode, model.log_likelihood, X, iw_samples=iw_samples, seed=self.random_state,
                                      lm=None if lm is None else lm.log_likelihood, oracle=oracle, topics=topics,
                                      device=self.device, extra=extra, progress=progress)

    def evaluate(self, X, y=None, *, iw_samples: int = SEQUENCE_IW_SAMPLES, oracle=None) -> dict:
        """Held-out metrics on token rows X (``shellvae.evaluation.sequence_metrics``): ``nll_iw`` / ``ppl_iw`` (with
        ``iw_samples`` importance samples a sequence), ``elbo``, ``kl``, ``mutual_info``, ``active_units``,
        ``nll_own``, ``nll_shuffled``, the language model's ``nll_lm`` and ``lm_gap``; the shell methods'
        bag metrics; with the generator's ``oracle`` (``TopicChains``) its exact NLL; with labels ``y``
        (topics, categories) the oracle given the topic and the linear probe's accuracy against chance
        (``probes.probe_metrics``: classes too rare to cross-validate are dropped and reported; with
        fewer than 2 left, the probe's metrics are None and every other metric is still returned).
        With ``progress`` on, a bar follows the importance-weighted NLL."""
        self._check_fitted()
        check_scalar(iw_samples, "iw_samples", integer=True)
        X = self._rows(X)
        if y is not None and len(y) != len(X):
            raise ShellVAEError(f"y has {len(y)} labels for {len(X)} sequences: give one per sequence.")
        return self._metrics(self.model_, X, iw_samples=iw_samples, lm=self.lm_, oracle=oracle, topics=y,
                             progress=self.progress)

    def certify(self, X, *, lm_nll=None, margin: float | None = None,
                allow_weaker_floor: bool = False) -> SequenceCertificate:
        """The language-model-floor certificate on held-out X (``certify_sequence_model``), against this
        fit's floor ``lm_`` (``lm_info_`` says how it was trained; the certificate's ``floor`` repeats it).
        ``lm_nll``: another floor's per-sequence NLL on X (an array or a callable): its provenance is
        unknown, so it is refused unless ``allow_weaker_floor=True``, and the certificate then records
        a caller-supplied floor. ``margin``: nats per sequence (default ``certificate_margin`` x the
        floor's mean NLL)."""
        self._check_fitted()
        X = self._rows(X)
        floor = floor_to_certify(self.lm_info_, lm_nll is not None, allow_weaker_floor)
        if lm_nll is None:
            if self.lm_ is None:
                raise ShellVAEError("no language model to certify against: fit with language_model=True (the "
                                    "default), or pass lm_nll (a floor's NLL of each held-out sequence) with "
                                    "allow_weaker_floor=True.")
            lm = self.lm_

            def lm_nll(x):
                return -lm.log_likelihood(x)
        model = self.model_
        with _eval_mode(model), _eval_mode(self.lm_):
            return certify_sequence_model(model.encode, lambda z, x: -model.log_likelihood(z, x), X, lm_nll=lm_nll,
                                          margin=margin, margin_share=self.certificate_margin,
                                          alpha=self.certificate_alpha, seed=self.random_state, device=self.device,
                                          floor=floor)

    def certify_region(self, X, *, metrics: dict | None = None):
        """The paper's certificate on the decoder's z-only bags of tokens (shell methods only;
        ``shellvae.core.sequence_region``). ``metrics``: this model's ``evaluate(X)``, if computed."""
        self._check_fitted()
        if self.region_ is None:
            raise ShellVAEError(f"method {self.method_.name!r} has no feasible region; certify_region needs a shell "
                                "method (shell, shell_lagrange, ...). certify(X) works for every method.")
        return certify_region(self.evaluate(X, iw_samples=1) if metrics is None else metrics, self.region_)

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, *, length: int | None = None) -> np.ndarray:
        """n token rows drawn ancestrally from the prior: z ~ N(0, I), then each token from the decoder;
        after an ``<eos>`` the row is padded."""
        self._check_fitted()
        check_scalar(n, "n", integer=True)
        check_scalar(seed, "seed", integer=True, low_open=False)  # as ShellVAE.sample: torch's own error is cryptic
        length = self.length_ if length is None else length
        check_scalar(length, "length", integer=True)
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=gen).to(self.device)
        x = torch.full((n, length), PAD, dtype=torch.int64, device=self.device)
        done = torch.zeros(n, dtype=torch.bool, device=self.device)
        with _eval_mode(self.model_):
            for t in range(length):
                probs = self.model_.decode(z, x[:, :t + 1].clone())[:, t].softmax(-1).cpu()
                probs[:, [PAD, BOS]] = 0.0
                token = torch.multinomial(probs, 1, generator=gen).squeeze(1).to(self.device)
                x[:, t] = torch.where(done, torch.full_like(token, PAD), token)
                done |= token == EOS
        return x.cpu().numpy()

    # -- the saved file (the shared record: ``VAEEstimator.save``) --------------------------------
    def _fitted_record(self) -> dict:
        return {"fitted": {"vocab_size_": self.vocab_size_, "length_": self.length_, "n_epochs_": self.n_epochs_,
                           "best_epoch_": self.best_epoch_},
                "lm_info": self.lm_info_,
                "vocab": None if self.vocab_ is None else list(self.vocab_.tokens),
                "lm": None if self.lm_ is None else weights(self.lm_),
                "region": None if self.region_ is None else storage.to_safe(self.region_.state_dict()),
                "lm_history": self.lm_history_}

    def _restore_fitted(self, record: dict, path) -> None:
        fitted = record["fitted"]
        self.vocab_size_, self.length_ = int(fitted["vocab_size_"]), int(fitted["length_"])
        # files written before early stopping: every epoch ran, the last one kept
        self.n_epochs_ = int(fitted.get("n_epochs_", len(record["history"])))
        self.best_epoch_ = int(fitted.get("best_epoch_", self.n_epochs_))
        self.lm_info_ = record.get("lm_info")
        self.vocab_ = None if record["vocab"] is None else Vocabulary(record["vocab"])
        self.region_ = None if record["region"] is None else SequenceRegion.from_state_dict(
            storage.from_safe(record["region"]))
        if self.region_ is not None:
            model_file.check_geometry(self.region_.geometry_)  # as fit leaves it: finite, labels within K
        self.model_ = self._build()
        load_weights(self.model_, record["model"], path, "the saved settings")
        self.lm_ = None
        if record["lm"] is not None:
            self.lm_ = self._build_lm()
            load_weights(self.lm_, record["lm"], path, "the saved settings (its language model)")
            self.lm_.to(self.device)
            self.lm_.info = self.lm_info_
        self.model_.to(self.device)
        self.lm_history_ = record["lm_history"]


class _eval_mode:
    """``with _eval_mode(module):`` eval() inside (no word dropout, running batch-norm statistics), the
    previous mode after; None is allowed (nothing to do)."""

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        if self.module is not None:
            self.was_training = self.module.training
            self.module.eval()
        return self.module

    def __exit__(self, *exc):
        if self.module is not None:
            self.module.train(self.was_training)
        return False
