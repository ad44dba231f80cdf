"""Real text (issue 27): the fortunes loader, early stopping in the one training loop, a
language-model floor nothing can weaken, verdicts that say what was measured, and a label probe
that survives rare classes."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shellvae import SequenceVAE, load_fortunes, make_topic_corpus
from shellvae.cli import main
from shellvae.core.sequence_model import language_model, sequence_vae, token_nll
from shellvae.data.sequences import N_SPECIAL, UNK
from shellvae.data.text import load_sequences
from shellvae.errors import DataError, ShellVAEError
from shellvae.estimators.sequence_floor import FLOOR_RECIPE
from shellvae.evaluation.sequence_certificate import certify_sequence_model
from shellvae.training.batches import TrainData
from shellvae.training.loop import EarlyStopping, train
from shellvae.training.methods import Objective, get_method

LOVE = """A kiss is a course of procedure, cunningly devised.
%
Absence diminishes mediocre passions; it increases great ones.
\t\t-- La Rochefoucauld
%
Love is blind, and don't you forget it!
%
%
Love makes the world go round.
%
A very long record that goes on and on and on and on and on and on and on and on and on.
"""
SCIENCE = """The _\bs_\bu_\bn is a star.
%
Atoms are mostly empty space.
%
Water boils at 100 degrees.
%
Gravity pulls; light travels fast.
"""


@pytest.fixture
def fortunes_dir(tmp_path):
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "love").write_text(LOVE)
    (folder / "science").write_text(SCIENCE)
    (folder / "love.dat").write_bytes(b"\x00\x02\x00\x00binary index")
    (folder / "off").mkdir()  # the offensive set: a folder, skipped
    (folder / "off" / "rude").write_text("Not read.\n%\n")
    os.symlink(folder / "love", folder / "love.u8")
    os.symlink(folder / "science", folder / "linked")  # a symlink is skipped, whatever its name
    return folder


# -- the fortunes loader ---------------------------------------------------------------------------------------
def test_fortunes_records_labels_tokens_and_split(fortunes_dir):
    data = load_fortunes(fortunes_dir, test_size=0.25, seed=0)
    assert data.info["categories"] == ["love", "science"]
    assert len(data.X_train) + len(data.X_test) == 9  # 5 love records (one empty record skipped) + 4 science
    assert sorted(np.concatenate([data.y_train, data.y_test]).tolist()) == [0] * 5 + [1] * 4
    everything = [data.vocab.decode(row) for row in np.concatenate([data.X_train, data.X_test])]
    train_words = {w for row in data.X_train for w in data.vocab.decode(row)}
    assert all(w in train_words or w == "<unk>" for row in everything for w in row)  # training-split vocabulary
    tokens = {w for row in everything for w in row}
    assert {",", ".", ";"} <= tokens  # punctuation marks are tokens of their own
    assert all(w == w.lower() for w in tokens)
    assert not any("\x08" in w or "_" in w for w in tokens)
    again = load_fortunes(fortunes_dir, test_size=0.25, seed=0)
    assert np.array_equal(again.X_train, data.X_train) and np.array_equal(again.y_test, data.y_test)


def test_fortunes_records_tokens_and_overstrikes(fortunes_dir):
    from shellvae.data.fortunes import read_records, tokenize

    assert read_records(fortunes_dir / "science")[0] == "The sun is a star."  # underlining (_\bs) removed
    assert len(read_records(fortunes_dir / "love")) == 5  # the empty record between two % lines is none
    assert tokenize("Love is blind, and don't you forget it!") == [
        "love", "is", "blind", ",", "and", "don't", "you", "forget", "it", "!"]
    assert tokenize("The Sun", lowercase=False) == ["The", "Sun"]


def test_fortunes_max_words_categories_and_unknown_words(fortunes_dir):
    data = load_fortunes(fortunes_dir, categories=["love"], max_words=15, test_size=0.25, seed=1)
    assert data.info["categories"] == ["love"] and data.info["n_dropped_long"] == 1
    assert "1 record(s) longer than max_words=15 dropped" in data.description
    assert (data.X_train != 0).sum(axis=1).max() <= 16  # 15 tokens and <eos>
    small = load_fortunes(fortunes_dir, min_count=2, test_size=0.25)
    assert (np.concatenate([small.X_train, small.X_test]) == UNK).any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(categories=["love", "poetry"]), r"'poetry' not in .*love, science"),
    (dict(categories=[]), "selects nothing"),
    (dict(max_words=1), "at least 2"),
])
def test_fortunes_clear_errors(fortunes_dir, kwargs, message):
    with pytest.raises(DataError, match=message):
        load_fortunes(fortunes_dir, **kwargs)


def test_fortunes_missing_folder_names_the_package(tmp_path):
    with pytest.raises(DataError, match="apt-get install fortunes"):
        load_fortunes(tmp_path / "nowhere")
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "x.dat").write_bytes(b"\x00")
    with pytest.raises(DataError, match="apt-get install fortunes"):
        load_fortunes(tmp_path / "only")


def test_fortunes_through_load_sequences(fortunes_dir):
    data = load_sequences(f"fortunes:{fortunes_dir}", test_size=0.25, categories=["science", "love"], n_train=4)
    assert len(data.X_train) == 4 and len(data.y_train) == 4
    with pytest.raises(ShellVAEError, match="max_words"):
        load_sequences(f"fortunes:{fortunes_dir}", max_length=5)


@pytest.mark.skipif(not Path("/usr/share/games/fortunes/love").is_file(), reason="Debian's fortunes not installed")
def test_the_installed_fortunes_corpus():
    data = load_fortunes(categories=["love", "science"], max_words=30)
    assert data.info["categories"] == ["love", "science"] and len(data.X_train) > 300
    assert set(np.unique(data.y_train)) == {0, 1}


def test_cli_trains_on_fortunes(fortunes_dir, tmp_path):
    result = CliRunner().invoke(main, [
        "train-text", "--data", f"fortunes:{fortunes_dir}", "--categories", "love,science", "--max-words", "20",
        "--method", "free_bits", "--epochs", "2", "--latent-dim", "2", "--hidden-dim", "8", "--embed-dim", "8",
        "--iw-samples", "2", "--test-size", "0.3", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["dataset"] == "fortunes" and record["epochs_run"] <= 2 and "best epoch" in result.output
    assert record["lm_info"]["word_dropout"] == 0.0
    # feedback: the floor's bar is labelled as the floor, and evaluation says what it does
    assert "language-model floor:" in result.output and "vanilla:" not in result.output
    assert "evaluating on 2 held-out sequences" in result.output
    assert "held-out NLL (2 importance samples)" in result.output
    # 2 held-out records of 2 categories: too few rows for the probe's folds, reported, not fatal
    assert record["probe_accuracy"] is None and "remain" in record["probe_note"] and record["nll_iw"] > 0


# -- early stopping in the one loop -------------------------------------------------------------------------
def test_early_stopping_restores_the_best_weights_and_halves_the_step():
    data = make_topic_corpus(64, 8, n_topics=2, vocab_size=6, length=5, support=2, seed=0)
    torch.manual_seed(0)
    model = sequence_vae(10, 5, 2, embed_dim=4, hidden_dim=4)
    scripted = iter([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 2.0])  # best at epoch 3, then three epochs without improvement
    seen = {}

    def validate(m):
        seen[len(seen) + 1] = {k: v.clone() for k, v in m.state_dict().items()}
        return {"nll": next(scripted)}

    history = train(model, get_method("vanilla"), TrainData(torch.as_tensor(data.X_train)),
                    Objective(sigma2=None, reconstruction=token_nll), epochs=10, batch_size=16, lr=1e-2, seed=0,
                    validate=validate, progress=False, early_stopping=EarlyStopping(monitor="nll", patience=3))
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]  # all epochs kept, stopped after 3 bad ones
    assert [row["best"] for row in history] == [False, False, True, False, False, False]
    assert [row["lr"] for row in history] == [1e-2, 1e-2, 1e-2, 1e-2, 5e-3, 2.5e-3]
    restored = model.state_dict()
    assert all(torch.equal(restored[k], seen[3][k]) for k in restored)
    assert not all(torch.equal(restored[k], seen[6][k]) for k in restored)


@pytest.mark.parametrize("method, params, stop_after", [
    ("beta", {"kl_beta": 0.5}, 4),  # a constant weight below beta is where its schedule ends: epochs count
    ("kl_anneal", {"warmup_epochs": 3}, 6),  # epochs 1-3 ramp the weight up: they count no bad streak
])
def test_early_stopping_counts_epochs_once_the_schedule_has_settled(method, params, stop_after):
    data = make_topic_corpus(64, 8, n_topics=2, vocab_size=6, length=5, support=2, seed=0)
    model = sequence_vae(10, 5, 2, embed_dim=4, hidden_dim=4)
    history = train(model, get_method(method, **params), TrainData(torch.as_tensor(data.X_train)),
                    Objective(sigma2=None, reconstruction=token_nll), epochs=10, batch_size=16, lr=1e-2, seed=0,
                    validate=lambda m: {"nll": 1.0}, progress=False,  # flat: every epoch after the first is bad
                    early_stopping=EarlyStopping(monitor="nll", patience=3))
    assert len(history) == stop_after


def test_early_stopping_needs_held_out_data_and_a_sound_rule():
    model = language_model(10, 5, 2, embed_dim=4, hidden_dim=4)
    data = TrainData(torch.as_tensor(make_topic_corpus(16, 4, n_topics=2, vocab_size=6, length=5).X_train))
    with pytest.raises(ShellVAEError, match="validate="):
        train(model, get_method("vanilla"), data, Objective(sigma2=None, reconstruction=token_nll), epochs=2,
              batch_size=8, lr=1e-2, seed=0, progress=False, early_stopping=EarlyStopping())
    with pytest.raises(ShellVAEError, match="did not return"):
        train(model, get_method("vanilla"), data, Objective(sigma2=None, reconstruction=token_nll), epochs=2,
              batch_size=8, lr=1e-2, seed=0, progress=False, validate=lambda m: {"other": 1.0},
              early_stopping=EarlyStopping(monitor="nll"))
    for bad in (dict(patience=0), dict(lr_factor=0.0), dict(lr_patience=0)):
        with pytest.raises(ShellVAEError):
            EarlyStopping(**bad)


# -- the floor nothing can weaken -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus():
    return make_topic_corpus(300, 120, n_topics=3, vocab_size=8, length=6, support=2, seed=3)


@pytest.fixture(scope="module")
def dropout_vae(corpus):
    """A VAE trained with word dropout 0.5: its floor must not inherit it."""
    return SequenceVAE("free_bits", method_params={"free_bits": 0.5}, latent_dim=2, embed_dim=8, hidden_dim=16,
                       epochs=3, patience=2, word_dropout=0.5, lr=1e-2, batch_size=16).fit(corpus.X_train)


def test_the_floor_is_trained_without_the_vae_s_word_dropout(dropout_vae, corpus):
    est = dropout_vae
    assert est.model_.decoder.word_dropout == 0.5
    assert est.lm_.decoder.word_dropout == 0.0 and est.lm_info_["word_dropout"] == 0.0
    info = est.lm_info_
    assert info["early_stopping"] and info["epochs"] == len(est.lm_history_) <= FLOOR_RECIPE["max_epochs"]
    assert info["lr"] == FLOOR_RECIPE["lr"] and info["decoder"] == "lstm" and info["hidden_dim"] == 16
    best = next(row for row in est.lm_history_ if row["best"])
    assert info["best_epoch"] == best["epoch"] and info["held_out_nll"] == best["val_nll"]
    assert 1 <= est.n_epochs_ <= 3 and 1 <= est.best_epoch_ <= est.n_epochs_
    cert = est.certify(corpus.X_test)
    # the floor certify uses is that language model: its NLL on X, and its training record
    with torch.no_grad():
        lm_nll = -est.lm_.eval().log_likelihood(torch.as_tensor(corpus.X_test)).double().numpy()
    assert cert.nll_lm == pytest.approx(lm_nll.mean(), rel=1e-6)
    assert cert.floor == info and cert.to_dict()["floor"]["held_out_nll"] == info["held_out_nll"]
    text = str(cert)
    assert "floor: z-free language model (lstm decoder" in text and "word dropout 0" in text
    assert f"held-out NLL {info['held_out_nll']:.3f}" in text


def test_the_floor_survives_save_and_load(dropout_vae, corpus, tmp_path):
    dropout_vae.save(tmp_path / "m.pt")
    loaded = SequenceVAE.load(tmp_path / "m.pt")
    assert loaded.lm_info_ == dropout_vae.lm_info_ and loaded.n_epochs_ == dropout_vae.n_epochs_
    assert loaded.certify(corpus.X_test).to_dict() == dropout_vae.certify(corpus.X_test).to_dict()


def test_a_floor_weaker_than_the_recipe_is_refused_unless_asked_for(dropout_vae, corpus):
    settings = dict(latent_dim=2, embed_dim=8, hidden_dim=16, epochs=1, patience=None, batch_size=16)
    # a floor from a fit on the same data, by the recipe: accepted
    shared = SequenceVAE("vanilla", **settings).fit(corpus.X_train, lm=dropout_vae)
    assert shared.lm_info_["weaker"] == [] and shared.certify(corpus.X_test).floor["source"] == "passed to fit (lm=)"
    # a floor trained with word dropout (as the VAE's own used to be)
    dropped = language_model(dropout_vae.vocab_size_, 6, 2, embed_dim=8, hidden_dim=16, word_dropout=0.5)
    dropped.info = {**dropout_vae.lm_info_, "word_dropout": 0.5}
    with pytest.raises(ShellVAEError, match="word_dropout=0.5"):
        SequenceVAE("vanilla", **settings).fit(corpus.X_train, lm=dropped)
    # one of unknown provenance, one without early stopping, one of other data
    raw = language_model(dropout_vae.vocab_size_, 6, 2, embed_dim=8, hidden_dim=16)
    with pytest.raises(ShellVAEError, match="unknown provenance"):
        SequenceVAE("vanilla", **settings).fit(corpus.X_train, lm=raw)
    raw.info = {**dropout_vae.lm_info_, "early_stopping": False}
    with pytest.raises(ShellVAEError, match="without early stopping"):
        SequenceVAE("vanilla", **settings).fit(corpus.X_train, lm=raw)
    with pytest.raises(ShellVAEError, match="other data"):
        SequenceVAE("vanilla", **settings).fit(corpus.X_train[:200], lm=dropout_vae)
    # asked for by name: trained, and the certificate says so
    weak = SequenceVAE("vanilla", **settings).fit(corpus.X_train, lm=dropped, allow_weaker_floor=True)
    with pytest.raises(ShellVAEError, match="allow_weaker_floor=True"):
        weak.certify(corpus.X_test)
    cert = weak.certify(corpus.X_test, allow_weaker_floor=True)
    assert cert.floor["weaker"] and "WEAKER than the floor's recipe" in str(cert)


def test_a_caller_s_lm_nll_is_refused_unless_asked_for(dropout_vae, corpus):
    values = np.full(len(corpus.X_test), 50.0)
    with pytest.raises(ShellVAEError, match="unknown provenance"):
        dropout_vae.certify(corpus.X_test, lm_nll=values)
    cert = dropout_vae.certify(corpus.X_test, lm_nll=values, allow_weaker_floor=True)
    assert cert.nll_lm == 50.0 and cert.floor["source"] == "caller" and "caller-supplied" in str(cert)


def test_a_gap_below_the_margin_is_not_called_independence():
    """Gaps of 0.30 and 0.41 nats (s.e. about 0.02) against a margin of 0.5: not certified, and the
    words say there is not enough evidence, with the numbers, never that the decoder ignores z."""
    rng = np.random.default_rng(0)
    n = 400
    lm = rng.normal(40.0, 2.0, n)
    own = lm - 0.30 + rng.normal(0, 0.4, n)
    shuffled = own + 0.41 + rng.normal(0, 0.4, n)
    X = np.arange(n)[:, None].repeat(2, axis=1) + N_SPECIAL

    def encode(x):
        return x[:, :1].double()

    def decode_nll(z, x):
        rows = x[:, 0] - N_SPECIAL
        return torch.as_tensor(np.where((z[:, 0] - N_SPECIAL).numpy() == rows.numpy(), own[rows], shuffled[rows]))

    cert = certify_sequence_model(encode, decode_nll, X, lm_nll=lm, margin=0.5)
    assert not cert.certified
    text = " ".join(cert.reasons)
    for claim in ("does not depend", "does as well", "ignores z"):
        assert claim not in text
    assert text.count("not enough evidence") == 2
    assert f"{cert.lm_test.mean_gap:+.3f} \u00b1 {cert.lm_test.std_error:.3f}" in text
    assert f"{cert.shuffle_test.mean_gap:+.3f} \u00b1 {cert.shuffle_test.std_error:.3f}" in text
    assert "margin 0.500" in text and "p = " in text
    assert cert.floor is None and "unknown provenance" in str(cert)


# -- a probe over labels with rare classes --------------------------------------------------------------------
def test_the_probe_drops_and_reports_classes_it_cannot_cross_validate():
    from shellvae.evaluation.probes import probe_metrics

    rng = np.random.default_rng(0)
    y = np.array([0] * 20 + [1] * 20 + [2] * 3 + [3] * 1)
    Z = rng.normal(size=(len(y), 2)) + 3.0 * y[:, None]
    out = probe_metrics(Z, y, cv=5)
    assert out["probe_dropped_classes"] == [2, 3] and out["probe_dropped_rows"] == 4
    assert out["chance_accuracy"] == 0.5 and out["probe_accuracy"] > 0.9  # on the 40 rows of classes 0 and 1
    assert "2 class(es) with fewer than 5 rows, 4 rows: 2, 3" in out["probe_note"]
    lonely = probe_metrics(Z[20:], y[20:], cv=5)
    assert lonely["probe_accuracy"] is None and lonely["chance_accuracy"] is None
    assert "1 class(es) with at least 5 rows" in lonely["probe_note"]
    assert probe_metrics(Z[:40], y[:40])["probe_note"] is None


def test_evaluate_keeps_every_label_free_metric_when_classes_are_rare(dropout_vae, corpus):
    y = np.zeros(len(corpus.X_test), dtype=int)
    y[::2] = 1
    y[:3] = [2, 3, 3]  # a class of one row and one of two
    metrics = dropout_vae.evaluate(corpus.X_test, y, iw_samples=2)
    assert metrics["probe_dropped_classes"] == [2, 3] and metrics["probe_dropped_rows"] == 3
    assert 0 <= metrics["probe_accuracy"] <= 1 and metrics["chance_accuracy"] >= 0.5
    single = dropout_vae.evaluate(corpus.X_test, np.r_[np.zeros(len(y) - 1, int), 1], iw_samples=2)
    assert single["probe_accuracy"] is None and "remain" in single["probe_note"]
    for key in ("nll_iw", "elbo", "kl", "mutual_info", "active_units", "nll_lm"):
        assert key in single


def test_patience_settings(corpus, tmp_path):
    settings = dict(latent_dim=2, embed_dim=8, hidden_dim=8, epochs=2, language_model=False)
    every = SequenceVAE("vanilla", patience=None, **settings).fit(corpus.X_train)
    assert every.n_epochs_ == every.best_epoch_ == 2 and "best" not in every.history_[-1]
    for bad in (0, 1.5, True):
        with pytest.raises(ShellVAEError, match="patience"):
            SequenceVAE("vanilla", patience=bad, **settings).fit(corpus.X_train)
    result = CliRunner().invoke(main, ["train-text", "--data", "corpus:topics", "--patience", "0", "--out",
                                       str(tmp_path / "run")])
    assert result.exit_code == 2 and "--patience" in result.output


def test_a_shell_method_s_region_is_fitted_on_the_rows_it_trains_on(corpus):
    """With early stopping, 10% of X is held out: the region's cluster labels, which a batch's
    centres are looked up by, must be those of the rows trained on, row for row."""
    from shellvae.core.sequence_region import SequenceRegion
    from shellvae.estimators.sequence_floor import hold_out

    est = SequenceVAE("shell", latent_dim=2, embed_dim=8, hidden_dim=8, epochs=1, n_clusters=3,
                      language_model=False).fit(corpus.X_train)
    trained_on, _ = hold_out(corpus.X_train, 0.1, 0)
    assert len(est.region_.geometry_.labels_) == len(trained_on) == 270
    alone = SequenceRegion(3, vocab_size=est.vocab_size_, random_state=0).fit(trained_on)
    assert np.array_equal(np.asarray(est.region_.geometry_.labels_), np.asarray(alone.geometry_.labels_))
