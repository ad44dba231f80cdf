"""The certificate's floor for ``SequenceVAE``: the z-free language model, trained by its own recipe
and never by the model under test's, and the checks that refuse a weaker one.

A floor trained with word dropout, or stopped before it converged, is a lower bar: a decoder that
ignores z can clear it (issue 27: ``free_bits`` with ``word_dropout=0.25`` was certified against
a floor trained with that dropout, and not against one trained without). So the floor always
follows ``FLOOR_RECIPE``, ``lm_info_`` records how it was trained, and a floor from elsewhere is
checked against the recipe and refused unless the caller passes ``allow_weaker_floor=True``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from shellvae.core.sequence_model import LanguageModel, token_nll
from shellvae.errors import ShellVAEError
from shellvae.evaluation.sequence_metrics import lm_nll
from shellvae.training.batches import TrainData
from shellvae.training.loop import EarlyStopping, train
from shellvae.training.methods import Objective, get_method

#: an epoch improves a held-out monitor only by more than this share of it: a tenth of the certificate's
#: default 1% margin, so a run still creeping down by less than that cannot move a verdict
REL_DELTA = 1e-3
#: the z-free language model's own recipe (the certificate's floor), whatever the VAE uses: no word
#: dropout (it handicaps a z-free decoder, so it would lower the bar); trained until its held-out NLL
#: stops improving by more than ``rel_delta`` of it (an under-trained floor is a bar any decoder
#: clears), the library's default step, halved on every epoch without improvement. ``max_epochs``
#: only caps a run that keeps improving; ``converged`` in ``lm_info_`` says whether it stopped by itself.
FLOOR_RECIPE = {"word_dropout": 0.0, "max_epochs": 50, "patience": 3, "lr": 5e-3, "rel_delta": REL_DELTA}
#: the share of X held out for early stopping when ``fit`` gets no X_val
VALIDATION_SHARE = 0.1


def hold_out(X: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of X's rows: (the rest, ``share`` of them, at least one), each in X's order."""
    n_out = min(max(1, round(share * len(X))), len(X) - 1)
    held = np.zeros(len(X), dtype=bool)
    held[np.random.default_rng([seed, 27]).permutation(len(X))[:n_out]] = True
    return X[~held], X[held]


def fingerprint(X: np.ndarray) -> str:
    """What data a floor was trained from, to tell a floor of other data (a hash of the rows)."""
    return hashlib.sha256(np.ascontiguousarray(X, dtype=np.int64).tobytes() + str(X.shape).encode()).hexdigest()[:16]


def train_floor(lm: LanguageModel, X_train, X_stop, *, architecture: dict, batch_size: int, seed: int, device,
                progress: bool, data: str) -> tuple[LanguageModel, dict, list[dict]]:
    """Train the z-free language model ``lm`` (built without word dropout) by ``FLOOR_RECIPE`` on
    X_train, early-stopped on its exact NLL on X_stop; returns it, its ``lm_info_`` and its history.
    ``architecture``: the decoder's settings to record; ``data``: the ``fingerprint`` of fit's X."""
    def validate(model):
        was_training = model.training
        model.eval()
        try:
            return {"nll": float(lm_nll(model.log_likelihood, X_stop, device=device).mean())}
        finally:
            model.train(was_training)

    history = train(lm, get_method("vanilla"), TrainData(torch.as_tensor(X_train, device=device)),
                    Objective(sigma2=None, reconstruction=token_nll), epochs=FLOOR_RECIPE["max_epochs"],
                    batch_size=batch_size, lr=FLOOR_RECIPE["lr"], seed=seed, validate=validate, progress=progress,
                    desc="language-model floor",
                    early_stopping=EarlyStopping(monitor="nll", patience=FLOOR_RECIPE["patience"],
                                                 rel_delta=FLOOR_RECIPE["rel_delta"]))
    best = next(row for row in history if row.get("best"))
    info = {"source": "fit", **{k: v for k, v in architecture.items() if k != "word_dropout"},
            "word_dropout": FLOOR_RECIPE["word_dropout"], "early_stopping": True,
            "patience": FLOOR_RECIPE["patience"], "max_epochs": FLOOR_RECIPE["max_epochs"], "lr": FLOOR_RECIPE["lr"],
            "batch_size": batch_size, "epochs": len(history), "best_epoch": int(best["epoch"]),
            "converged": len(history) < FLOOR_RECIPE["max_epochs"], "held_out_nll": float(best["val_nll"]),
            "n_held_out": int(len(X_stop)), "data": data}
    lm.info = info  # travels with the module, so another fit given this lm can check its provenance
    return lm, info, history


def floor_weaknesses(info: dict, data: str | None = None) -> list[str]:
    """How a floor's training (``lm_info_``) falls short of ``FLOOR_RECIPE`` (and, with ``data``, of
    being trained on the data of that fingerprint): [] for a floor as strong."""
    if info.get("provenance") == "unknown" or "word_dropout" not in info:
        return ["unknown provenance (not trained by a SequenceVAE fit, so how it was trained cannot be checked)"]
    weaker = []
    if info["word_dropout"] > 0:
        weaker.append(f"trained with word_dropout={info['word_dropout']} (the floor's recipe has none)")
    if not info.get("early_stopping"):
        weaker.append("trained without early stopping on held-out NLL")
    elif not info.get("converged"):
        weaker.append(f"stopped at its maximum of {info.get('max_epochs')} epochs while still improving")
    if data is not None and info.get("data") != data:
        weaker.append("trained on other data than this fit's X")
    return weaker


def accept_floor(lm, info: dict | None, built: LanguageModel, data: str,
                 allow_weaker: bool) -> tuple[LanguageModel, dict]:
    """A floor given to ``fit(lm=...)`` (its ``info``: how it was trained, or None), if it fits the
    architecture ``built`` and the recipe; a weaker one only with ``allow_weaker`` (recorded)."""
    shapes = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    if not isinstance(lm, LanguageModel) or {k: tuple(v.shape) for k, v in lm.state_dict().items()} != shapes:
        raise ShellVAEError("lm must be a LanguageModel of this architecture and vocabulary (e.g. the lm_ of a "
                            "SequenceVAE fitted on the same data with the same settings).")
    info = dict(info) if info is not None else {"source": "caller", "provenance": "unknown"}
    weaker = floor_weaknesses(info, data)
    if weaker and not allow_weaker:
        raise ShellVAEError(f"the language model given as lm is a weaker floor than the certificate's own recipe: "
                            f"{'; '.join(weaker)}. A weaker floor is a lower bar, so a collapsed decoder could clear "
                            "it. Leave lm out (fit trains the floor), or pass allow_weaker_floor=True to certify "
                            "against it anyway (the certificate will say so).")
    info.update(source="passed to fit (lm=)", weaker=weaker)
    return lm, info


def floor_to_certify(info: dict | None, caller_nll: bool, allow_weaker: bool) -> dict:
    """What ``certify`` records as its floor: this fit's (``info``, its ``lm_info_``), or with
    ``caller_nll`` the caller's ``lm_nll``. Refuses a weaker or unknown one unless ``allow_weaker``."""
    if not isinstance(allow_weaker, bool):
        raise ShellVAEError(f"allow_weaker_floor={allow_weaker!r}: give True or False.")
    if caller_nll:
        if not allow_weaker:
            raise ShellVAEError("lm_nll is a floor of unknown provenance (how it was trained cannot be checked), so it "
                                "may be weaker than the certificate's own (no word dropout, trained to convergence on "
                                "held-out NLL) and a collapsed decoder could clear it. Leave lm_nll out to use this "
                                "fit's floor, or pass allow_weaker_floor=True to certify against it anyway (the "
                                "certificate will record a caller-supplied floor).")
        return {"source": "caller", "provenance": "unknown (lm_nll)", "weaker": ["caller-supplied lm_nll"]}
    # this fit's own floor follows the recipe (if it hit its epoch cap, the certificate says so); a floor passed
    # to fit carries what was wrong with it; a file older than lm_info_ cannot say how its floor was trained
    weaker = info.get("weaker", []) if info else ["unknown provenance (a model file older than lm_info_)"]
    if weaker and not allow_weaker:
        raise ShellVAEError(f"this fit's floor is weaker than the certificate's own recipe ({'; '.join(weaker)}); "
                            "refit without lm=, or pass allow_weaker_floor=True to certify against it anyway.")
    return dict(info or {"source": "caller", "provenance": "unknown", "weaker": weaker})
