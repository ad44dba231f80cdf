"""Saving and loading a fitted ``ShellVAE``: weights, settings, shell and geometry in one file
written atomically and read without running code (``io.save`` / ``io.load``). A model trained
with the user's own networks needs them passed again on load; the file never carries code.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from shellvae import io, model_file
from shellvae.errors import ShellVAEError
from shellvae.estimator_checks import check_networks
from shellvae.geometry import ClusterGeometry
from shellvae.methods import get_method
from shellvae.region import FeasibleRegion
from shellvae.shell import SphericalShell


def load_weights(est, state: dict, path, custom: dict | None) -> None:
    """Restore saved weights into ``model_``, or say which keys and shapes do not fit."""
    built = {k: tuple(v.shape) for k, v in est.model_.state_dict().items()}
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
        networks = (f"the encoder and decoder given (trained: {custom['encoder']}, {custom['decoder']})" if custom
                    else f"arch={est.arch!r}")
        raise ShellVAEError(f"{path}: the saved weights do not fit the model built from {networks}: "
                            f"{'; '.join(problems)}. Build the networks exactly as for training.")
    est.model_.load_state_dict(state)

def save_estimator(est, path) -> None:
    """Atomically save a fitted ``ShellVAE`` with its shell, geometry and settings (no pickled code)."""
    params = {k: v for k, v in est.get_params().items() if k not in ("method", "encoder", "decoder")}
    for key in ("encoder_hidden", "decoder_hidden", "image_shape"):
        params[key] = None if params[key] is None else list(params[key])
    custom = None  # the user's modules: their weights are saved, their code is not (load takes them again)
    if est.custom_networks:
        custom = {"encoder": type(est.encoder).__name__, "decoder": type(est.decoder).__name__}
    io.save(path, {
        "params": params,
        "custom": custom,
        "method": {"name": est.method_.name, "params": est.method_.params(), "state": est.method_.state_dict()},
        "fitted": {"sigma2_": est.sigma2_, "n_features_in_": est.n_features_in_},
        "shell": io.to_safe(est.shell_.state_dict()),
        "geometry": io.to_safe(est.geometry_.state_dict()),
        "model": {k: v.cpu() for k, v in est.model_.state_dict().items()},
        "history": est.history_,
    }, kind="model")

def load_estimator(cls, path, device: str = "cpu", *, encoder: nn.Module | None = None,
                   decoder: nn.Module | None = None):
    """Load a model saved by ``save``. The file holds weights and settings, never code: a model
    trained with your own ``encoder`` and ``decoder`` needs them again here (the same classes and
    sizes; their weights are replaced by the saved ones), one trained with a registered ``arch``
    needs that name registered. Weights that do not fit get an error naming the keys and shapes."""
    record = io.load(path, kind="model")  # refuses code, foreign files and other format versions
    custom = record.get("custom")
    given = encoder is not None or decoder is not None
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
    with io.reading(path):
        params = model_file.inert(record["params"])  # not the training run's checkpoint path
        model_file.check_hidden_sizes(params, record["model"])
        for key in ("encoder_hidden", "decoder_hidden", "image_shape"):
            params[key] = None if params[key] is None else tuple(params[key])
        est = cls(method=record["method"]["name"], **{**params, "device": device, "encoder": encoder,
                                                      "decoder": decoder})
        model_file.check_params(est)  # as the constructor's caller (fit) checks them
        check_networks(est)
        est.method_ = model_file.checked(get_method, est.method, **record["method"]["params"])
        est.method_.load_state_dict(io.from_safe(record["method"]["state"]))
        est.sigma2_, est.n_features_in_ = record["fitted"]["sigma2_"], record["fitted"]["n_features_in_"]
        shell = SphericalShell.from_state_dict(io.from_safe(record["shell"]))
        geometry = ClusterGeometry.from_state_dict(io.from_safe(record["geometry"]))
        est.shell_, est.geometry_ = shell, geometry  # checked before the region is built from them
        model_file.check_fitted(est)
        est._set_region(FeasibleRegion.from_fitted(geometry, shell))
        est.model_ = est.method_.prepare(est._build_model(est.n_features_in_))
        load_weights(est, record["model"], path, custom)
        width = (est.n_features_in_,)
        if np.shape(est.shell_.mean_) != width or np.shape(est.geometry_.centers_)[1:] != width:
            raise ShellVAEError(f"{path}: its shell or cluster centres do not have the model's "
                                f"{est.n_features_in_} features; the file was altered. Retrain the model.")
        est.model_.to(device)
        est.history_ = record["history"]
    return est
