"""``shellvae train-text``: train a ``SequenceVAE`` on token sequences, with options of its own.

Every option is one of ``SequenceVAE``'s settings or of the text loader's, with the estimator's
defaults; nothing of the vector ``train`` command (a decoder variance, image options, memory maps)
is there to be refused. Bad values are usage errors of their option (exit 2) before any data is
read, as for ``train``.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from shellvae.base import storage
from shellvae.cli.run_folder import begin_train, claim
from shellvae.cli.inputs import (FiniteFloat, FiniteFloatRange, OutputPath, check_estimator, check_output_files,
                                 clean_errors, output_folder, parse_method_params)
from shellvae.core.sequence_model import DECODERS
from shellvae.data.text import is_sequence_spec, load_sequences
from shellvae.errors import ShellVAEError
from shellvae.estimators.sequence_vae import SequenceVAE
from shellvae.evaluation.likelihood import SEQUENCE_IW_SAMPLES
from shellvae.reporting.tables import write_history_csv
from shellvae.training.methods import METHODS

DEFAULTS = SequenceVAE().get_params()
#: what train-text writes into OUT
OUTPUT_FILES = ("metrics.json", "history.csv", "model.pt")
#: SequenceVAE parameter -> the option a bad value of it is reported against
OPTION_OF = {name: "--" + name.replace("_", "-") for name in DEFAULTS}
OPTION_OF["random_state"] = "--seed"


@click.command("train-text")
@click.option("--data", required=True,
              help="Token sequences: a .txt file (one sequence per line, tokens split on white space), "
                   "fortunes[:FOLDER] (Debian's quotations, `sudo apt-get install fortunes`; each record's "
                   "category its label) or corpus:topics[:KEY=VALUE,...] (a generated corpus with an exact "
                   "likelihood; docs/sequences.md).")
@click.option("--method", type=click.Choice(list(METHODS)), default=DEFAULTS["method"], show_default=True,
              help="A registered training method; shell_norm is refused (a bag of tokens has no norm to bound).")
@click.option("-p", "--method-param", "method_param", multiple=True, metavar="KEY=VALUE",
              help="A hyperparameter of the method, e.g. -p free_bits=0.25 (repeatable); see docs/methods.md.")
@click.option("--decoder", type=click.Choice(DECODERS), default=DEFAULTS["decoder"], show_default=True)
@click.option("--latent-dim", type=int, default=DEFAULTS["latent_dim"], show_default=True)
@click.option("--embed-dim", type=int, default=DEFAULTS["embed_dim"], show_default=True)
@click.option("--hidden-dim", type=int, default=DEFAULTS["hidden_dim"], show_default=True)
@click.option("--word-dropout", type=FiniteFloat(), default=DEFAULTS["word_dropout"], show_default=True,
              help="Probability of replacing each decoder input token by <unk> in training.")
@click.option("--beta", type=FiniteFloat(), default=DEFAULTS["beta"], show_default=True, help="KL weight.")
@click.option("--epochs", type=int, default=DEFAULTS["epochs"], show_default=True,
              help="The most epochs (all of them with --no-early-stopping).")
@click.option("--patience", type=int, default=DEFAULTS["patience"], show_default=True,
              help="Stop after this many epochs without a better held-out ELBO, keeping the best epoch's weights.")
@click.option("--no-early-stopping", is_flag=True, help="Train every epoch (patience None).")
@click.option("--batch-size", type=int, default=DEFAULTS["batch_size"], show_default=True)
@click.option("--lr", type=FiniteFloat(), default=DEFAULTS["lr"], show_default=True)
@click.option("--n-clusters", type=int, default=DEFAULTS["n_clusters"], show_default=True,
              help="K of the bag-of-tokens clusters (shell methods).")
@click.option("--language-model/--no-language-model", default=DEFAULTS["language_model"], show_default=True,
              help="Train the z-free language model, the certificate's floor.")
@click.option("--certificate-margin", type=FiniteFloat(), default=DEFAULTS["certificate_margin"], show_default=True,
              help="The certificate's margin as a share of the language model's held-out NLL.")
@click.option("--certificate-alpha", type=FiniteFloat(), default=DEFAULTS["certificate_alpha"], show_default=True,
              help="The level of the certificate's one-sided paired tests.")
@click.option("--iw-samples", type=click.IntRange(min=1), default=SEQUENCE_IW_SAMPLES, show_default=True,
              help="Importance samples per held-out sequence for the NLL.")
@click.option("--min-count", type=click.IntRange(min=1), default=None,
              help="Text files: keep tokens seen at least this often (others become <unk>).")
@click.option("--max-vocab", type=click.IntRange(min=1), default=None, help="Text files: at most this many tokens.")
@click.option("--max-length", type=click.IntRange(min=1), default=None, help="Text files: cut sequences to this.")
@click.option("--lowercase", is_flag=True, help="Text files: lowercase every token (fortunes always are).")
@click.option("--categories", default=None, metavar="NAME,NAME,...",
              help="fortunes: the categories to read (default every one), e.g. love,science,politics.")
@click.option("--max-words", type=click.IntRange(min=1), default=None,
              help="fortunes: drop records of more tokens than this.")
@click.option("--test-size", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=0.2,
              show_default=True, help="Held-out share of a text file.")
@click.option("--n-train", type=click.IntRange(min=1), default=None, help="Use this many training sequences.")
@click.option("--n-test", type=click.IntRange(min=1), default=None, help="Use this many held-out sequences.")
@click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=DEFAULTS["random_state"], show_default=True)
@click.option("--device", default=DEFAULTS["device"], show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace the run OUT holds (without it, it is refused).")
@click.option("--out", type=OutputPath(file_okay=False), required=True, help="Output folder, one run's.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@clean_errors
def train_text(data, method, method_param, iw_samples, min_count, max_vocab, max_length, lowercase, categories,
               max_words, test_size, n_train, n_test, seed, overwrite, out, quiet, no_early_stopping, **settings):
    """Train a sequence VAE on token sequences; write OUT/run.json (what this run is) first, then
    OUT/metrics.json, OUT/history.csv, OUT/model.pt."""
    if not is_sequence_spec(data):
        raise ShellVAEError(f"--data {data!r} does not name token sequences (a .txt file, fortunes or "
                            "corpus:topics); train vectors with `shellvae train`.")
    if no_early_stopping:
        settings["patience"] = None
    if categories is not None:
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    text_options = {k: v for k, v in dict(min_count=min_count, max_vocab=max_vocab, max_length=max_length,
                                          lowercase=lowercase or None, categories=categories,
                                          max_words=max_words).items() if v is not None}
    if data.startswith("corpus:") and text_options:
        raise ShellVAEError(f"--{', --'.join(k.replace('_', '-') for k in text_options)}: text-file options; "
                            f"--data {data!r} is generated.")
    est = SequenceVAE(method, method_params=parse_method_params(method, method_param), random_state=seed,
                      progress=not quiet, **settings)
    check_estimator(est, OPTION_OF)
    spec = {"data": data, "n_train": n_train, "n_test": n_test, "seed": seed, "test_size": test_size, **text_options}
    with output_folder(out) as folder, claim(folder, OUTPUT_FILES, overwrite=overwrite, resumable=False) as run:
        check_output_files(folder, OUTPUT_FILES)
        click.echo(train_sequences(est, spec, iw_samples, folder, on_data=lambda dataset: (
            begin_train(run, est, spec, dataset, OUTPUT_FILES, command="train-text"))))


def train_sequences(est: SequenceVAE, spec: dict, iw_samples: int, out, on_data=None) -> str:
    """Load the data of ``spec``, train ``est`` (its parameters checked) and write OUT/metrics.json,
    OUT/history.csv, OUT/model.pt; returns the text to print. ``on_data(dataset)``, if given, runs once
    the data is read, before training (the command line writes the run's manifest there)."""
    out = Path(out)
    dataset = load_sequences(**spec)
    if on_data is not None:
        on_data(dataset)
    start = time.perf_counter()
    est.fit(dataset.X_train, vocab=dataset.vocab)
    fit_seconds = time.perf_counter() - start
    if est.progress:
        click.echo(f"trained {est.n_epochs_} epoch(s), best {est.best_epoch_} ({fit_seconds:.0f} s); evaluating on "
                   f"{len(dataset.X_test)} held-out sequences ({iw_samples} importance samples each)...", err=True)
    metrics = est.evaluate(dataset.X_test, dataset.y_test, oracle=dataset.corpus, iw_samples=iw_samples)
    if est.progress and est.lm_ is not None:
        click.echo("certifying against the language-model floor...", err=True)
    cert = est.certify(dataset.X_test) if est.lm_ is not None else None
    record = {"dataset": dataset.name, "description": dataset.description, "method": est.method_.name,
              "method_params": est.method_.params(), "fit_seconds": fit_seconds, "epochs_run": est.n_epochs_,
              "best_epoch": est.best_epoch_, "lm_info": est.lm_info_, **metrics,
              "certified": None if cert is None else cert.certified,
              "certificate": None if cert is None else cert.to_dict(),
              "data_spec": spec}
    if est.region_ is not None:
        region_cert = est.certify_region(dataset.X_test, metrics=metrics)
        record["region_certified"] = region_cert.certified
    storage.write_json(out / "metrics.json", record)
    write_history_csv(out / "history.csv", est.history_)
    est.save(out / "model.pt")
    floor = est.lm_info_
    lines = [f"{dataset!r}: {dataset.description}",
             f"{est.method_.name}: {est.n_epochs_} epoch(s) run, best epoch {est.best_epoch_}"
             + ("" if est.patience is None else f" (early stopping, patience {est.patience})")
             + ("" if not floor or "epochs" not in floor else
                f"; language-model floor: {floor['epochs']} epoch(s), best {floor['best_epoch']}"),
             f"{est.method_.name}: held-out NLL {metrics['nll_iw']:.3f} nats/sequence (perplexity "
             f"{metrics['ppl_iw']:.3f}), KL {metrics['kl']:.3f}, MI {metrics['mutual_info']:.3f} (biased: near 0 reads as 0), "
             f"{metrics['active_units']} active units"
             + (f"; oracle NLL {metrics['oracle_nll']:.3f}" if "oracle_nll" in metrics else ""),
             *_probe_lines(metrics),
             str(cert) if cert is not None else "no language model (--no-language-model): no certificate",
             f"wrote {out / 'metrics.json'}, {out / 'history.csv'}, {out / 'model.pt'}"]
    return "\n".join(lines)


def _probe_lines(metrics: dict) -> list[str]:
    """The label probe's line, when labels were given: accuracy against chance, or why there is none."""
    if "probe_accuracy" not in metrics:
        return []
    if metrics["probe_accuracy"] is None:
        return [f"label probe: not computed ({metrics.get('probe_note', 'too few classes')})"]
    line = f"label probe: accuracy {metrics['probe_accuracy']:.3f} against chance {metrics['chance_accuracy']:.3f}"
    if metrics.get("probe_note"):
        line += f" ({metrics['probe_note']})"
    return [line]
