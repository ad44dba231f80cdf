"""Qualitative output of sequence VAEs (Bowman et al. 2016): decoding codes, reconstructions, homotopies,
text from token rows, and the Markdown report; on a four-sentence corpus a VAE memorises in a second."""

import copy

import numpy as np
import pytest
import torch

from shellvae import SequenceVAE, Vocabulary, make_topic_corpus
from shellvae.data.sequences import BOS, EOS, PAD
from shellvae.errors import DataError, NotFittedError, ShellVAEError
from shellvae.reporting.text_samples import qualitative_report

WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "in", "park", "birds", "sing", "at", "dawn", "fish",
         "swim", "|", "deep"]
SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "birds sing at dawn", "fish swim | deep"]
LENGTH = 7


def rows(vocab):
    return np.array([(vocab.encode(s.split()) + [EOS] + [PAD] * LENGTH)[:LENGTH] for s in SENTENCES])


@pytest.fixture(scope="module")
def corpus():
    vocab = Vocabulary.from_words(WORDS)
    return vocab, rows(vocab)


def fit(corpus, method="free_bits", **params):
    vocab, base = corpus
    settings = {"latent_dim": 2, "embed_dim": 16, "hidden_dim": 32, "epochs": 30, "batch_size": 20, "lr": 1e-2,
                "language_model": False, "random_state": 0, "patience": None}
    settings.update(params)
    mp = {"free_bits": 1.0} if method == "free_bits" else {}
    return SequenceVAE(method, method_params=mp, **settings).fit(np.repeat(base, 50, axis=0), vocab=vocab)


@pytest.fixture(scope="module")
def memorised(corpus):
    """Free bits keep >= 1 nat a dimension in z: enough (log 4 = 1.39 nats) to tell the four sentences apart."""
    return fit(corpus)


@pytest.fixture(scope="module")
def collapsed(corpus):
    return fit(corpus, "vanilla")


def test_greedy_reconstruction_of_a_memorised_corpus_returns_the_inputs(corpus, memorised):
    _, base = corpus
    np.testing.assert_array_equal(memorised.reconstruct(base), base)
    assert memorised.decode_text(memorised.reconstruct(base)) == SENTENCES


def test_a_decoder_that_ignores_z_decodes_every_code_to_one_sentence(corpus, memorised):
    _, base = corpus
    blind = copy.deepcopy(memorised)
    with torch.no_grad():  # cut z out of the LSTM decoder's input: the decoder of a collapsed model, exactly
        blind.model_.decoder.lstm.weight_ih_l0[:, blind.embed_dim:] = 0.0
    z = np.random.default_rng(0).standard_normal((6, 2)) * 3
    assert len(set(blind.decode_text(blind.inverse_transform(z)))) == 1
    assert len(set(blind.decode_text(blind.reconstruct(base)))) == 1
    assert len(set(memorised.decode_text(memorised.inverse_transform(z)))) > 1


def test_homotopy_ends_are_the_reconstructions_of_its_two_sentences(corpus, memorised, collapsed):
    _, base = corpus
    for est in (memorised, collapsed):
        path = est.homotopy(base[0], base[2], steps=6)
        assert path.shape == (6, LENGTH) and path.dtype == np.int64
        rec = est.reconstruct(base[[0, 2]])
        np.testing.assert_array_equal(path[0], rec[0])
        np.testing.assert_array_equal(path[-1], rec[1])
    assert memorised.homotopy(base[0][None, :], base[2], steps=2).shape == (2, LENGTH)  # (1, T) rows too


def test_shapes_padding_and_determinism_under_a_seed(corpus, memorised):
    _, base = corpus
    z = np.random.default_rng(1).standard_normal((8, 2))
    for greedy in (True, False):
        out = memorised.inverse_transform(z, greedy=greedy, seed=3)
        assert out.shape == (8, LENGTH)
        np.testing.assert_array_equal(out, memorised.inverse_transform(z, greedy=greedy, seed=3))
        assert not np.isin(out, [BOS]).any() and (out[:, 0] != PAD).all()
        for row in out:  # <pad> only after an <eos>, and always after it
            ends = np.flatnonzero(row == EOS)
            if len(ends):
                assert (row[ends[0] + 1:] == PAD).all()
            assert (row == PAD).sum() == (LENGTH - ends[0] - 1 if len(ends) else 0)
    assert memorised.inverse_transform(z, length=3).shape == (8, 3)
    assert memorised.reconstruct(base, greedy=False, seed=0).shape == base.shape
    sampled = [memorised.inverse_transform(z * 4, greedy=False, seed=s) for s in range(4)]
    assert any((a != sampled[0]).any() for a in sampled[1:])  # the seed is used


def test_decode_text_stops_at_eos_and_drops_padding(memorised):
    vocab = memorised.vocab_
    row = vocab.encode(["the", "cat"]) + [EOS] + vocab.encode(["dog"]) + [PAD]
    assert memorised.decode_text(np.array(row)) == ["the cat"]
    assert memorised.decode_text([vocab.encode(["fish"]) + [PAD, PAD]]) == ["fish"]
    other = Vocabulary.from_words([f"w{i}" for i in range(len(vocab))])
    assert memorised.decode_text([[4, 5]], vocab=other) == ["w0 w1"]


def test_report_has_the_three_views_and_is_deterministic(corpus, memorised, collapsed):
    _, base = corpus
    report = qualitative_report(memorised, base, n_samples=3, n_reconstructions=4, pair=(0, 3), steps=4)
    assert report == qualitative_report(memorised, base, n_samples=3, n_reconstructions=4, pair=(0, 3), steps=4)
    for heading in ("Sentences from the prior", "reconstructions", "Homotopy"):
        assert heading in report
    assert "| the cat sat on the mat | the cat sat on the mat |" in report
    assert "fish swim \\| deep" in report  # a pipe in a sentence does not break the table
    assert report.count("\n| 0.") == 3 and "| 1.00 |" in report
    assert "vanilla, lstm decoder" in qualitative_report(collapsed, base, n_reconstructions=0, title=None)


def test_not_fitted_is_refused():
    est = SequenceVAE()
    for call in (lambda: est.inverse_transform(np.zeros((1, 16))), lambda: est.reconstruct([[4, 5]]),
                 lambda: est.homotopy([4], [5]), lambda: qualitative_report(est, [[4, 5]])):
        with pytest.raises(NotFittedError):
            call()


@pytest.mark.parametrize("call, error, message", [
    (lambda e, b: e.inverse_transform(np.zeros((2, 3))), ShellVAEError, "latent_dim"),
    (lambda e, b: e.inverse_transform([[0.0, np.nan]]), ShellVAEError, "non-finite"),
    (lambda e, b: e.inverse_transform([["a", "b"]]), ShellVAEError, "could not be read"),
    (lambda e, b: e.inverse_transform(np.zeros((1, 2)), greedy="yes"), ShellVAEError, "greedy"),
    (lambda e, b: e.inverse_transform(np.zeros((1, 2)), seed=-1), ShellVAEError, "seed"),
    (lambda e, b: e.inverse_transform(np.zeros((1, 2)), length=0), ShellVAEError, "length"),
    (lambda e, b: e.reconstruct([[4.5, 5]]), DataError, "dtype"),
    (lambda e, b: e.reconstruct([[4, 99]]), DataError, "token id 99"),
    (lambda e, b: e.homotopy(b[:2], b[2]), DataError, "one token row"),
    (lambda e, b: e.homotopy(b[0], b[1], steps=1), ShellVAEError, "steps"),
    (lambda e, b: e.homotopy(b[0], [0, 4]), DataError, "empty"),
    (lambda e, b: e.decode_text([[0.5]]), DataError, "integer token rows"),
    (lambda e, b: e.sample(2, seed=-1), ShellVAEError, "seed"),
    (lambda e, b: qualitative_report(e, b, pair=(0, 9)), DataError, "X_test has 4 rows"),
    (lambda e, b: qualitative_report(e, b, pair=0), ShellVAEError, "two row indices"),
    (lambda e, b: qualitative_report(e, b, n_samples=0), ShellVAEError, "n_samples"),
])
def test_bad_input_is_refused_clearly(corpus, memorised, call, error, message):
    with pytest.raises(error, match=message):
        call(memorised, corpus[1])


def test_text_needs_a_vocabulary_and_the_transformer_its_length():
    data = make_topic_corpus(60, 10, n_topics=2, vocab_size=6, length=5, seed=0)
    est = SequenceVAE("vanilla", latent_dim=2, embed_dim=8, hidden_dim=8, epochs=1, patience=None,
                      decoder="transformer", language_model=False).fit(data.X_train)
    assert est.reconstruct(data.X_test).shape == data.X_test.shape
    with pytest.raises(ShellVAEError, match="no vocabulary"):
        est.decode_text(data.X_test)
    with pytest.raises(ShellVAEError, match="vocabulary"):
        qualitative_report(est, data.X_test)
    with pytest.raises(ShellVAEError, match="built for 5"):
        est.inverse_transform(np.zeros((1, 2)), length=6)
    assert est.decode_text(data.X_test[:1], vocab=data.vocab)[0].startswith("t")
