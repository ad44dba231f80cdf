"""What every shellvae estimator shares, written once: the checks of the hyperparameters both have,
building the method, the fit check, and the saved file (settings, method, weights, history).

An estimator subclasses ``VAEEstimator`` and keeps only what its data needs: ``ShellVAE`` (vectors:
the shell, the cluster geometry, Gaussian decoders) and ``SequenceVAE`` (token sequences: the
vocabulary, the z-free language model, the bag-of-tokens region). ``clone`` and ``get_params`` come
from scikit-learn's ``BaseEstimator``: ``__init__`` stores hyperparameters only.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from sklearn.base import BaseEstimator
from torch import nn

from shellvae.base import model_file, storage
from shellvae.base.validation import check_scalar
from shellvae.errors import NotFittedError, ShellVAEError
from shellvae.training.methods import Method, get_method

#: the integer hyperparameters every estimator has, each at least 1
SHARED_COUNTS = ("latent_dim", "epochs", "batch_size", "eval_every")


class VAEEstimator(BaseEstimator):
    """The base of ``ShellVAE`` and ``SequenceVAE``.

    A subclass sets ``file_kind`` (the kind its saved files carry: loading refuses another kind) and
    the hints of the shared checks' messages, and implements ``_check_own_params`` (its other
    hyperparameters), ``_fitted_record`` (what it saves beyond the shared record) and
    ``_restore_fitted`` (rebuilding ``model_`` and its fitted state from that record).
    """

    file_kind: ClassVar[str]
    #: the message hints of the shared checks
    lr_hint: ClassVar[str] = "Adam's usual step is 1e-3."
    margin_high: ClassVar[float] = 1.0
    margin_hint: ClassVar[str]
    #: hyperparameters the saved settings leave out (modules: a file never carries code)
    unsaved_params: ClassVar[tuple[str, ...]] = ()
    #: hyperparameters saved as lists and given back as tuples
    tuple_params: ClassVar[tuple[str, ...]] = ()

    def _store_hyperparameters(self, arguments: dict) -> None:
        """Store ``__init__``'s arguments as they are, one attribute each (scikit-learn's rule: no logic
        in ``__init__``); a subclass's ``__init__`` calls ``self._store_hyperparameters(locals())``."""
        for name in self._get_param_names():
            setattr(self, name, arguments[name])

    # -- checks -------------------------------------------------------------------------------
    def check_params(self) -> None:
        """Check every hyperparameter before any data is read (``fit`` does; the CLI does first)."""
        for name in SHARED_COUNTS:
            check_scalar(getattr(self, name), name, integer=True)
        check_scalar(self.lr, "lr", fix=self.lr_hint)
        check_scalar(self.beta, "beta", low_open=False, fix="beta=0 turns the KL term off.")
        check_scalar(self.random_state, "random_state", integer=True, low_open=False, high=2**32 - 1)
        check_scalar(self.certificate_margin, "certificate_margin", low_open=False, high=self.margin_high,
                     fix=self.margin_hint)
        if not (self.method_params is None or isinstance(self.method_params, dict)):
            raise ShellVAEError(f"method_params={self.method_params!r}: give a dict of the method's hyperparameters, "
                                "e.g. {'free_bits': 0.25} for free_bits, or None.")
        self.build_method()  # the method checks its own hyperparameters
        check_device(self.device)
        self._check_own_params()

    def _check_own_params(self) -> None:
        """The hyperparameters only this estimator has."""
        raise NotImplementedError

    def build_method(self) -> Method:
        """A fresh method from ``method`` and ``method_params`` (a given instance is copied)."""
        return get_method(self.method, **(self.method_params or {}))

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            name = type(self).__name__
            raise NotFittedError(f"This {name} is not fitted yet: call fit(X) first (or {name}.load(path)).")

    # -- the saved file -----------------------------------------------------------------------
    def save(self, path) -> None:
        """Atomically save the fitted model with everything it needs and its settings (no pickled code)."""
        self._check_fitted()
        params = {k: v for k, v in self.get_params().items() if k not in ("method", *self.unsaved_params)}
        for key in self.tuple_params:
            params[key] = None if params[key] is None else list(params[key])
        storage.save(path, {
            "params": params,
            "method": {"name": self.method_.name, "params": self.method_.params(), "state": self.method_.state_dict()},
            "model": weights(self.model_),
            "history": self.history_,
            **self._fitted_record(),
        }, kind=self.file_kind)

    def _fitted_record(self) -> dict:
        """What this estimator saves beyond settings, method, model weights and history."""
        raise NotImplementedError

    @classmethod
    def load(cls, path, device: str = "cpu", **modules):
        """A model written by ``save``; refuses code, other kinds of file and damaged ones with a clear error
        (``base/model_file.py``: the archive's checksums, every field validated). The loaded model is inert:
        the training run's ``checkpoint`` and ``resume`` are not carried into it.
        ``modules``: networks the file cannot carry (``ShellVAE``'s own ``encoder`` and ``decoder``)."""
        record = storage.load(path, kind=cls.file_kind)
        cls._check_record(record, path, modules)
        with storage.reading(path, cls.file_kind.replace("_", " ")):
            params = model_file.inert(record["params"])  # not the training run's checkpoint path
            model_file.check_hidden_sizes(params, record["model"])  # before building (allocating) the layers
            for key in cls.tuple_params:
                params[key] = None if params[key] is None else tuple(params[key])
            est = cls(method=record["method"]["name"], **{**params, **modules, "device": device})
            model_file.check_params(est)  # every field as fit checks it, naming the file
            # the method as saved (its hyperparameters range-checked: a tampered value is named, not trained)
            est.method_ = model_file.checked(get_method, est.method, **record["method"]["params"])
            est.method_.load_state_dict(storage.from_safe(record["method"]["state"]))
            est._restore_fitted(record, path)
            est.history_ = record["history"]
        return est

    @classmethod
    def _check_record(cls, record: dict, path, modules: dict) -> None:
        """Refuse a record that ``modules`` do not fit, before anything is built (none by default)."""
        if modules:
            raise ShellVAEError(f"{cls.__name__}.load takes no modules; got {', '.join(modules)}.")

    def _restore_fitted(self, record: dict, path) -> None:
        """Rebuild ``model_`` and the fitted state from a loaded record (weights with ``load_weights``)."""
        raise NotImplementedError


def weights(model: nn.Module) -> dict:
    """A module's weights on the CPU, as a file stores them."""
    return {k: v.cpu() for k, v in model.state_dict().items()}


def load_weights(model: nn.Module, state: dict, path, built_from: str) -> None:
    """Restore saved weights into ``model``, or say which keys and shapes do not fit ``built_from``."""
    built = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    saved = {k: tuple(v.shape) for k, v in state.items()}

    def listed(items: list[str], sep: str = ", ") -> str:
        return sep.join(items[:3]) + (f" (and {len(items) - 3} more)" if len(items) > 3 else "")

    problems = []
    if missing := sorted(built.keys() - saved.keys()):
        problems.append(f"missing from the file: {listed(missing)}")
    if extra := sorted(saved.keys() - built.keys()):
        problems.append(f"not in the model built here: {listed(extra)}")
    if wrong := [f"{k} saved {saved[k]}, built {built[k]}" for k in built if k in saved and saved[k] != built[k]]:
        problems.append(f"other shapes: {listed(wrong, '; ')}")
    if problems:
        raise ShellVAEError(f"{path}: the saved weights do not fit the model built from {built_from}: "
                            f"{'; '.join(problems)}. Build the networks exactly as for training.")
    model.load_state_dict(state)


def check_device(device) -> None:
    """``device`` names a torch device this machine has."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ShellVAEError(f"device={device!r} is not a torch device ({exc}); use 'cpu' or 'cuda'.") from None
    if parsed.type == "meta":  # tensors without data: training or loading on it cannot work
        raise ShellVAEError(f"device={device!r} holds no data (shapes only); use 'cpu' or 'cuda'.")
    count = {"cuda": torch.cuda.device_count, "mps": lambda: int(torch.backends.mps.is_available())}
    if parsed.type in count and (parsed.index or 0) >= count[parsed.type]():
        raise ShellVAEError(f"device={device!r}: this machine has no such {parsed.type} device; use 'cpu'.")
