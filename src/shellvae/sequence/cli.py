"""``shellvae train --data FILE.txt|corpus:topics ...``: the command line's sequence branch.

``shellvae.cli``'s ``train`` command hands its options here when ``--data`` names token sequences
(``data.is_sequence_spec``). Options the user gave that have no meaning for sequences (a decoder
variance, image options, memory maps) are refused by name; options left at their defaults take
``SequenceVAE``'s defaults, not ``ShellVAE``'s. ``--seq-param KEY=VALUE`` sets the sequence model
and the text loader (``SEQ_PARAMS``).
"""

from __future__ import annotations

import csv
import io as text_io
import time
from pathlib import Path

import click

from shellvae import io
from shellvae.errors import ShellVAEError
from shellvae.methods import METHODS
from shellvae.sequence.inputs import is_sequence_spec, load_sequences
from shellvae.sequence.estimator import SequenceVAE

#: --seq-param keys: the sequence model's settings and the text loader's options, with their types
SEQ_PARAMS = {"decoder": str, "embed_dim": int, "hidden_dim": int, "word_dropout": float, "certificate_alpha": float,
              "language_model": bool, "iw_samples": int, "min_count": int, "max_vocab": int, "max_length": int,
              "lowercase": bool}
TEXT_OPTIONS = ("min_count", "max_vocab", "max_length", "lowercase")
#: the train command's options that mean nothing for token sequences
NOT_FOR_SEQUENCES = {"sigma2": "there is no Gaussian decoder (the decoder is categorical over tokens)",
                     "sigma2_ratio": "there is no Gaussian decoder (the decoder is categorical over tokens)",
                     "arch": "the sequence model is an LSTM encoder and an autoregressive decoder (--seq-param decoder=)",
                     "show": "there are no images", "mmap": "token files are read whole",
                     "compile_": "sequence models are not compiled", "amp": "sequence models train in float32",
                     "resume": "sequence training keeps no checkpoint", "ddp": "sequence training is single-process",
                     "data_dir": "give the .txt file itself as --data"}
#: how an option is spelled on the command line, where that differs from its parameter name
SPELLING = {"ddp": "--distributed", "compile_": "--compile"}
#: the method trained when --method is not given
DEFAULT_METHOD = "free_bits"
#: what train writes into OUT for token sequences
OUTPUT_FILES = ("metrics.json", "history.csv", "model.pt")
#: SequenceVAE parameter -> the option a bad value of it is reported against
OPTION_OF = {"n_clusters": "--n-clusters", **dict.fromkeys(SEQ_PARAMS, "--seq-param")}
#: train-command option -> SequenceVAE parameter, used when given on the command line
PASSED = {"epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "latent_dim": "latent_dim", "beta": "beta",
          "n_clusters": "n_clusters", "device": "device", "certificate_margin": "certificate_margin"}
_BOOL = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def parse_seq_params(pairs) -> dict:
    """``--seq-param KEY=VALUE`` pairs as typed values; a clear error for an unknown key or a bad value."""
    params = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or key not in SEQ_PARAMS:
            raise click.BadParameter(f"{pair!r}: write KEY=VALUE with KEY one of {', '.join(SEQ_PARAMS)}.",
                                     param_hint="--seq-param")
        kind = SEQ_PARAMS[key]
        try:
            if kind is bool:
                params[key] = _BOOL[raw.strip().lower()]
            else:
                params[key] = kind(raw.strip())
        except (KeyError, ValueError):
            expected = {bool: "true or false", int: "an integer", float: "a number", str: "text"}[kind]
            raise click.BadParameter(f"{key}={raw!r}: expected {expected}.", param_hint="--seq-param") from None
    return params


def history_csv(history: list[dict]) -> str:
    """The per-epoch history as CSV text (columns: every key any epoch has, in first-seen order)."""
    columns = list(dict.fromkeys(k for row in history for k in row))
    buffer = text_io.StringIO()
    writer = csv.DictWriter(buffer, columns)
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def method_of(options: dict, given: set) -> str:
    """The method to train: ``--method`` if given, else ``DEFAULT_METHOD`` (free bits)."""
    method = options["method"] if "method" in given else DEFAULT_METHOD
    if method not in METHODS:
        raise ShellVAEError(f"--method {method!r}: unknown; available: {', '.join(METHODS)}.")
    return method


def prepare_sequences(options: dict, given: set, method_params: dict) -> tuple[SequenceVAE, dict, int | None]:
    """The ``SequenceVAE`` (unchecked: the caller runs ``check_params``), the data spec (the arguments
    of ``load_sequences``) and ``iw_samples``, from the train command's ``options`` (its parameters by
    name, as click gives them; ``given``: those set on the command line) and the parsed ``-p``
    hyperparameters. Reads no data."""
    data = options["data"]
    if not is_sequence_spec(data):
        raise ShellVAEError(f"--data {data!r} does not name token sequences (a .txt file or corpus:topics).")
    for name in sorted(given & set(NOT_FOR_SEQUENCES)):
        option = SPELLING.get(name, "--" + name.replace("_", "-"))
        raise ShellVAEError(f"{option} does not apply to token sequences: {NOT_FOR_SEQUENCES[name]}.")
    extra = parse_seq_params(options.get("seq_param", ()))
    text_options = {k: extra.pop(k) for k in TEXT_OPTIONS if k in extra}
    iw_samples = extra.pop("iw_samples", None)
    if iw_samples is not None and iw_samples < 1:
        raise click.BadParameter(f"iw_samples={iw_samples}: give a positive integer.", param_hint="--seq-param")
    if data.startswith("corpus:") and text_options:
        raise ShellVAEError(f"--seq-param {', '.join(text_options)}: text-file options; --data {data!r} is generated.")
    settings = {PASSED[k]: options[k] for k in PASSED if k in given}
    if "n_clusters" in settings:
        try:
            settings["n_clusters"] = int(settings["n_clusters"])
        except ValueError:
            raise click.BadParameter(f"{settings['n_clusters']!r}: give an integer >= 2 for sequences.",
                                     param_hint="--n-clusters") from None
    est = SequenceVAE(method_of(options, given), method_params=method_params, random_state=options["seed"],
                      progress=not options.get("quiet", False), **settings, **extra)
    spec = {"data": data, "n_train": options.get("n_train"), "n_test": options.get("n_test"), "seed": options["seed"],
            "test_size": options.get("test_size", 0.2), **text_options}
    return est, spec, iw_samples


def train_sequences(est: SequenceVAE, spec: dict, iw_samples: int | None, out, on_data=None) -> str:
    """Load the data of ``spec``, train ``est`` (from ``prepare_sequences``, its parameters checked)
    and write OUT/metrics.json, OUT/history.csv, OUT/model.pt; returns the text to print. ``on_data(dataset)``,
    if given, runs once the data is read, before training (the command line writes the run's manifest there)."""
    out = Path(out)
    dataset = load_sequences(**spec)
    if on_data is not None:
        on_data(dataset)
    start = time.perf_counter()
    est.fit(dataset.X_train, vocab=dataset.vocab)
    fit_seconds = time.perf_counter() - start
    metrics = est.evaluate(dataset.X_test, dataset.y_test, oracle=dataset.corpus,
                           **({} if iw_samples is None else {"iw_samples": iw_samples}))
    cert = est.certify(dataset.X_test) if est.lm_ is not None else None
    record = {"dataset": dataset.name, "description": dataset.description, "method": est.method_.name,
              "method_params": est.method_.params(), "fit_seconds": fit_seconds, **metrics,
              "certified": None if cert is None else cert.certified,
              "certificate": None if cert is None else cert.to_dict(),
              "data_spec": spec}
    if est.region_ is not None:
        region_cert = est.certify_region(dataset.X_test, metrics=metrics)
        record["region_certified"] = region_cert.certified
    io.write_json(out / "metrics.json", record)
    io.write_text(out / "history.csv", history_csv(est.history_))
    est.save(out / "model.pt")
    lines = [f"{dataset!r}: {dataset.description}",
             f"{est.method_.name}: held-out NLL {metrics['nll_iw']:.3f} nats/sequence (perplexity "
             f"{metrics['ppl_iw']:.3f}), KL {metrics['kl']:.3f}, MI {metrics['mutual_info']:.3f}, "
             f"{metrics['active_units']} active units"
             + (f"; oracle NLL {metrics['oracle_nll']:.3f}" if "oracle_nll" in metrics else ""),
             str(cert) if cert is not None else "no language model (--seq-param language_model=false): no certificate",
             f"wrote {Path(out) / 'metrics.json'}, {Path(out) / 'history.csv'}, {Path(out) / 'model.pt'}"]
    return "\n".join(lines)
