"""Sequence VAEs (the sequence family): the generator's oracle, the text loader, the models, every
method through the registry, the metrics, the language-model-floor certificate and the CLI."""

import inspect
import itertools
import json
import math
import re

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from shellvae import METHODS, SequenceVAE, mlp_vae
from shellvae.cli import main
from shellvae.errors import DataError, ShellVAEError
from shellvae.data.sequences import BOS, EOS, PAD, UNK, make_topic_chains, make_topic_corpus
from shellvae.core.sequence_region import SequenceRegion, bag_of_tokens
from shellvae.evaluation.bag_metrics import certify_region
from shellvae.evaluation.sequence_certificate import certify_sequence_model, paired_test
from shellvae.data.text import check_tokens, load_text
from shellvae.evaluation.sequence_metrics import iw_log_likelihood
from shellvae.core.sequence_model import sequence_vae
from shellvae.data.sequences import N_SPECIAL, TopicChains
from shellvae.data.text import encode_lines
from shellvae.evaluation.sequence_metrics import elbo, shuffled_order
from shellvae.core.sequence_model import decoder_inputs, language_model

#: the region methods sequences train with: shell_norm's only penalty bounds a norm, which bags have not
SHELL_METHODS = [m for m in METHODS if METHODS[m].needs_centers and m != "shell_norm"]
OTHER_METHODS = [m for m in METHODS if not METHODS[m].needs_centers]


@pytest.fixture(scope="module")
def tiny():
    """A small generated corpus: 4 topics over 10 tokens, sequences of 8."""
    return make_topic_corpus(400, 200, n_topics=4, vocab_size=10, length=8, support=2, seed=0)


def small(method="vanilla", **kw):
    settings = dict(latent_dim=4, embed_dim=8, hidden_dim=16, epochs=1, batch_size=64, n_clusters=4)
    return SequenceVAE(method, **{**settings, **kw})


# -- the generator and its oracle -------------------------------------------------------------------------
def test_entropy_by_dynamic_programming_equals_brute_force():
    chains = make_topic_chains(n_topics=2, vocab_size=3, length=4, support=2, seed=3)
    X = np.array(list(itertools.product(range(3), repeat=4))) + N_SPECIAL  # every sequence
    log_given = chains.log_prob_given_topic(X)
    p_given = np.exp(log_given)
    assert np.allclose(p_given.sum(axis=0), 1.0)  # each topic's distribution sums to 1
    with np.errstate(divide="ignore", invalid="ignore"):
        brute = -np.where(p_given > 0, p_given * log_given, 0.0).sum(axis=0)
    assert np.allclose(chains.entropy_given_topic(), brute)
    p = np.exp(chains.log_prob(X))
    assert math.isclose(p.sum(), 1.0)
    h = float(-(p[p > 0] * np.log(p[p > 0])).sum())
    low, high = chains.entropy_bounds()
    assert low - 1e-12 <= h <= high + 1e-12
    assert math.isclose(low, chains.conditional_entropy())


def test_exact_entropy_matches_a_monte_carlo_estimate():
    chains = make_topic_chains(n_topics=3, vocab_size=12, length=10, support=3, seed=1)
    X, topics = chains.sample(20_000, np.random.default_rng(0))
    nll = -chains.log_prob_given_topic(X)[np.arange(len(X)), topics]
    for k in range(3):
        values = nll[topics == k]
        se = values.std() / math.sqrt(len(values))
        assert abs(values.mean() - chains.entropy_given_topic()[k]) < 4 * se


def test_corpus_is_seeded_and_its_oracle_is_consistent(tiny):
    again = make_topic_corpus(400, 200, n_topics=4, vocab_size=10, length=8, support=2, seed=0)
    assert np.array_equal(tiny.X_train, again.X_train) and np.array_equal(tiny.y_test, again.y_test)
    assert tiny.X_train.shape == (400, 8) and tiny.X_train.min() >= N_SPECIAL and tiny.X_train.max() < 14
    oracle = tiny.corpus.oracle(tiny.X_test, tiny.y_test)
    assert oracle["oracle_nll_topic"] <= oracle["oracle_nll"]  # knowing the topic never hurts on average
    # the true model's mean NLL estimates H(X), which lies in [H(X|K), H(X|K) + H(K)], up to its noise
    nll = -tiny.corpus.log_prob(tiny.X_test)
    se = nll.std() / math.sqrt(len(nll))
    assert oracle["oracle_nll"] == pytest.approx(nll.mean(), rel=1e-12)
    assert oracle["entropy_given_topic"] - 4 * se <= oracle["oracle_nll"] <= oracle["entropy_upper"] + 4 * se
    assert len(tiny.vocab) == N_SPECIAL + 10 and tiny.vocab.decode(tiny.X_train[0])[0].startswith("t")
    restored = TopicChains.from_state_dict(tiny.corpus.state_dict())
    assert np.allclose(restored.log_prob(tiny.X_test), tiny.corpus.log_prob(tiny.X_test))


@pytest.mark.parametrize("kwargs", [dict(n_topics=0), dict(support=20, vocab_size=10), dict(length=1.5),
                                    dict(concentration=-1.0)])
def test_generator_refuses_bad_settings(kwargs):
    with pytest.raises(ShellVAEError):
        make_topic_corpus(10, 10, **kwargs)


# -- the text loader --------------------------------------------------------------------------------------
def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_text_loader_vocabulary_unknown_words_padding_and_split(tmp_path):
    lines = [f"the cat sat number{i}" for i in range(8)] + ["a dog ran", "", "   ", "the dog sat on the mat"]
    path = write(tmp_path, "small.txt", "\n".join(lines) + "\n")
    data = load_text(path, test_size=0.3, seed=0)
    assert len(data.X_train) + len(data.X_test) == 10  # blank lines dropped
    assert len(data.X_test) == 3
    assert data.X_train.shape[1] == data.X_test.shape[1] == 7  # the longest line (6 words) + <eos>
    vocab = data.vocab
    assert vocab.tokens[:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    # every row: ids, then <eos>, then padding
    for row in np.concatenate([data.X_train, data.X_test]):
        n = int((row != PAD).sum())
        assert row[n - 1] == EOS and (row[n:] == PAD).all() and ((row[:n - 1] > EOS) | (row[:n - 1] == UNK)).all()
    train_words = {w for row in data.X_train for w in vocab.decode(row)}
    assert set(vocab.tokens[4:]) == train_words  # the vocabulary comes from the training lines only
    # a word seen only in held-out lines is <unk> there (each "numberI" is in one line only)
    assert (data.X_test == UNK).any() and not (data.X_train == UNK).any()
    assert vocab.encode(["the", "zebra"]) == [vocab.index["the"], UNK]


def test_text_loader_min_count_max_vocab_and_max_length(tmp_path):
    path = write(tmp_path, "c.txt", "a a a b b c\n" * 5 + "a b c d e f g h\n")
    data = load_text(path, test_size=0.2, seed=1, min_count=2, max_vocab=2, max_length=4)
    assert data.vocab.tokens[4:] == ["a", "b"]
    assert data.X_train.shape[1] == 5  # cut to 4 words + <eos>
    assert data.info["n_cut"] == 6
    X = encode_lines([["a", "zzz"]], data.vocab, 5)
    assert X.tolist() == [[data.vocab.index["a"], UNK, EOS, PAD, PAD]]


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"), (b"\n \n\t\n", "is empty"), (b"one line only\n", "at least 2"),
    (b"good line\nbad \x00 line\n", "NUL byte"), (b"caf\xe9 au lait\nsecond\n", "not UTF-8"),
])
def test_text_loader_refuses_empty_corrupt_and_undecodable_files(tmp_path, content, message):
    with pytest.raises(DataError, match=message):
        load_text(write(tmp_path, "bad.txt", content))


def test_text_loader_refuses_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_text(tmp_path / "missing.txt")


@pytest.mark.parametrize("X, message", [
    (np.array([[4.5, 5.0]]), "dtype"), (np.array([[4, -1]]), "negative"), (np.array([[4, 0, 5]]), "after <pad>"),
    (np.array([[0, 0]]), "empty"), (np.array([[4, BOS]]), "<bos>"), (np.array([4, 5]), "shape"),
])
def test_token_rows_are_checked(X, message):
    with pytest.raises(DataError, match=message):
        check_tokens(X)


# -- the models --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder", ["lstm", "transformer"])
def test_shapes_and_teacher_forcing_sees_only_earlier_tokens(decoder):
    torch.manual_seed(0)
    model = sequence_vae(20, 9, 4, decoder=decoder, embed_dim=16, hidden_dim=16).eval()
    x = torch.randint(N_SPECIAL, 20, (3, 9))
    assert model.encoder(x).shape == (3, 8)
    out = model(x)
    assert out.mu.shape == (3, 4) and out.xhat.shape == (3, 9, 20)
    z = torch.randn(3, 4)
    y = x.clone()
    y[:, 5] = (x[:, 5] - N_SPECIAL + 1) % 16 + N_SPECIAL  # change the token at position 5
    a, b = model.decode(z, x), model.decode(z, y)
    assert torch.equal(a[:, :6], b[:, :6])  # steps 0..5 only see tokens before them
    assert not torch.allclose(a[:, 6], b[:, 6])  # step 6 sees token 5
    assert not torch.allclose(model.decode(z, x), model.decode(z + 1, x))  # z enters every step


def test_word_dropout_only_in_training():
    x = torch.tensor([[5, 6, 7, 8, EOS, PAD, PAD]])
    assert decoder_inputs(x, 1.0, training=False).tolist() == [[BOS, 5, 6, 7, 8, EOS, PAD]]
    assert decoder_inputs(x, 1.0, training=True).tolist() == [[BOS, UNK, UNK, UNK, UNK, UNK, PAD]]
    torch.manual_seed(0)
    dropped = decoder_inputs(torch.full((200, 10), 9), 0.3, training=True)
    share = float((dropped[:, 1:] == UNK).float().mean())
    assert 0.25 < share < 0.35 and (dropped[:, 0] == BOS).all()
    torch.manual_seed(0)
    model = sequence_vae(12, 7, 2, embed_dim=8, hidden_dim=8, word_dropout=0.5)
    z = torch.zeros(1, 2)
    model.eval()
    assert torch.equal(model.decode(z, x), model.decode(z, x))
    model.train()
    draws = [model.decode(z, x) for _ in range(3)]
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


# -- every method through the registry ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vanilla_sequence_latents(tiny):
    return small("vanilla", language_model=False).fit(tiny.X_train[:128]).transform(tiny.X_test[:5])


@pytest.mark.parametrize("method", OTHER_METHODS + SHELL_METHODS)
def test_every_method_trains_with_sequence_vae(tiny, method, vanilla_sequence_latents):
    params = {"max_inner_steps": 2, "check_every": 1} if method == "aggressive" else None
    params = {"e_steps": 1} if method == "em" else params
    est = small(method, method_params=params, language_model=False).fit(tiny.X_train[:128])
    assert len(est.history_) == 1 and math.isfinite(est.history_[0]["train_loss"])
    Z = est.transform(tiny.X_test[:5])
    assert Z.shape == (5, 4)
    # the method's own objective trained the model: same seed and data, another result than vanilla's
    assert (method == "vanilla") == np.array_equal(Z, vanilla_sequence_latents)
    assert (est.region_ is not None) == (method in SHELL_METHODS)
    if method in SHELL_METHODS:
        assert "train_l_clu" in est.history_[0]
        metrics = est.evaluate(tiny.X_test[:50], iw_samples=2)
        assert metrics["bag_collapse_floor"] > 0 and "bag_l_clu" in metrics


def test_shell_norm_is_refused_on_sequences_not_trained_as_shell_none(tiny):
    """A SequenceRegion bounds no norm: shell_norm (the norm penalty alone) would be shell_none."""
    with pytest.raises(ShellVAEError, match="shell_norm.*bounds no norm"):
        small("shell_norm", language_model=False).fit(tiny.X_train[:128])
    region = SequenceRegion(4, vocab_size=14, random_state=0).fit(tiny.X_train)
    with pytest.raises(ShellVAEError, match="no norm penalty"):
        region.norm_penalty(torch.zeros(2, 14))


def test_the_region_keeps_its_parent_s_fit_signature(tiny):
    region = SequenceRegion(4, random_state=0)
    assert list(inspect.signature(region.fit).parameters) == ["X", "y", "geometry"]
    assert region.fit(tiny.X_train).vocab_size_ == tiny.X_train.max() + 1
    with pytest.raises(ShellVAEError, match="vocab_size=14"):
        SequenceRegion(4).fit(tiny.X_train, 14)  # the released fit(X, vocab_size)


def test_the_bag_is_a_named_output_not_a_step_of_the_reconstruction(tiny):
    x = torch.as_tensor(tiny.X_train[:6])
    for bag_output in (False, True):
        out = sequence_vae(14, 8, 3, embed_dim=8, hidden_dim=8, bag_output=bag_output).eval()(x)
        assert out.xhat.shape == (6, 8, 14)
        assert (out.log_bag is not None) == bag_output
        if bag_output:
            assert out.log_bag.shape == (6, 14)


def test_every_model_family_meets_the_declared_contract():
    from shellvae.core.contract import TrainableModel, VectorModel

    models = [mlp_vae(5, 2), sequence_vae(12, 5, 3, embed_dim=8, hidden_dim=8),
              language_model(12, 5, 3, embed_dim=8, hidden_dim=8)]
    assert all(isinstance(m, TrainableModel) for m in models)
    assert isinstance(models[0], VectorModel)


def test_bn_vae_wraps_the_sequence_encoder():
    model = METHODS["bn_vae"]().prepare(sequence_vae(12, 5, 3, embed_dim=8, hidden_dim=8))
    mu, logvar = model.encode(torch.randint(N_SPECIAL, 12, (64, 5)))
    assert mu.shape == (64, 3) and torch.allclose(mu.std(dim=0, unbiased=False), torch.full((3,), 0.5), atol=1e-3)


def test_fit_evaluate_certify_save_load_round_trip(tiny, tmp_path):
    est = small("free_bits", method_params={"free_bits": 0.5}, epochs=2).fit(tiny.X_train, vocab=tiny.vocab)
    metrics = est.evaluate(tiny.X_test, tiny.y_test, iw_samples=5, oracle=tiny.corpus)
    for key in ("nll_iw", "ppl_iw", "elbo", "kl", "mutual_info", "active_units", "nll_own", "nll_shuffled", "nll_lm",
                "lm_gap", "oracle_nll", "oracle_nll_topic", "probe_accuracy"):
        assert key in metrics
    assert metrics["nll_iw"] < -metrics["elbo"]  # the IW bound (5 samples) is tighter than the ELBO (0.42 nats here)
    assert metrics["oracle_nll"] < metrics["nll_iw"]
    assert metrics["lm_gap"] == pytest.approx(metrics["nll_lm"] - metrics["nll_own"], abs=1e-9)
    assert metrics["ppl_iw"] == pytest.approx(math.exp(metrics["nll_iw"] / metrics["tokens_per_sequence"]), rel=1e-9)
    cert = est.certify(tiny.X_test)
    assert "held-out NLL" in str(cert)
    est.save(tmp_path / "m.pt")
    loaded = SequenceVAE.load(tmp_path / "m.pt")
    assert np.allclose(loaded.transform(tiny.X_test), est.transform(tiny.X_test))
    assert loaded.certify(tiny.X_test).to_dict() == cert.to_dict()
    assert loaded.vocab_.tokens == tiny.vocab.tokens
    samples = loaded.sample(4, seed=1)
    assert samples.shape == (4, 8) and np.array_equal(samples, loaded.sample(4, seed=1))


def test_load_refuses_other_and_damaged_files(tiny, tmp_path):
    small(language_model=False).fit(tiny.X_train[:64]).save(tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    with pytest.raises(ShellVAEError, match="not a readable"):
        SequenceVAE.load(tmp_path / "cut.pt")

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))
    torch.save({"format": "shellvae", "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ShellVAEError, match="refused to load"):
        SequenceVAE.load(tmp_path / "evil.pt")


def test_bad_settings_are_refused_before_training(tiny):
    for kwargs in (dict(decoder="gru"), dict(word_dropout=1.5), dict(lr=0), dict(n_clusters=1),
                   dict(method_params={"nope": 1})):
        with pytest.raises(ShellVAEError):
            small(**kwargs).fit(tiny.X_train)
    with pytest.raises(ShellVAEError, match="not fitted"):
        small().transform(tiny.X_test)


# -- metrics --------------------------------------------------------------------------------------------------
def test_iw_nll_equals_the_exact_likelihood_of_a_collapsed_model(tiny):
    """Posterior = prior and a decoder that ignores z with known probabilities (the true mixture):
    every importance weight is p(x), so the bound is exact for any K."""
    corpus = tiny.corpus
    X = tiny.X_test[:50]

    def encode(x):
        return torch.zeros(len(x), 3, dtype=torch.float64), torch.zeros(len(x), 3, dtype=torch.float64)

    def log_likelihood(z, x):
        return torch.as_tensor(corpus.log_prob(x.numpy()))

    exact = corpus.log_prob(X)
    for k in (1, 7):
        iw = iw_log_likelihood(encode, log_likelihood, X, n_samples=k).numpy()
        assert np.allclose(iw, exact, atol=1e-9)
    assert np.allclose(elbo(encode, log_likelihood, X).numpy(), exact)


def test_iw_nll_of_a_language_model_is_its_exact_likelihood(tiny):
    torch.manual_seed(0)
    lm = language_model(14, 8, 2, embed_dim=8, hidden_dim=8).eval()
    X = torch.as_tensor(tiny.X_test[:20])

    def encode(x):
        return torch.zeros(len(x), 2), torch.zeros(len(x), 2)

    iw = iw_log_likelihood(encode, lambda z, x: lm.log_likelihood(x), X, n_samples=4).numpy()
    with torch.no_grad():
        assert np.allclose(iw, lm.log_likelihood(X).double().numpy(), atol=1e-5)


def test_shuffled_partner_is_never_the_sequence_itself():
    for n in (2, 3, 10, 101):
        partner = shuffled_order(n, seed=0)
        assert sorted(partner) == list(range(n)) and (partner != np.arange(n)).all()


# -- the language-model floor ------------------------------------------------------------------------------------
def oracle_model(corpus):
    """The true model as a sequence VAE whose latent is the topic posterior p(k|x): the certificate's
    positive control; the true mixture is its z-free floor."""
    def encode(x):
        return torch.as_tensor(corpus.topic_posterior(x.numpy()))

    def decode_nll(z, x):  # -log sum_k z_k p(x|k): the topic-conditional likelihood under the code's topic weights
        log_given = torch.as_tensor(corpus.log_prob_given_topic(x.numpy()))
        return -torch.logsumexp(log_given + z.clamp(min=1e-300).log(), dim=1)
    return encode, decode_nll


def test_a_latent_carrying_the_topic_is_certified():
    data = make_topic_corpus(10, 500, n_topics=8, vocab_size=20, length=12, support=3, seed=2)
    encode, decode_nll = oracle_model(data.corpus)
    cert = certify_sequence_model(encode, decode_nll, data.X_test, lm_nll=-data.corpus.log_prob(data.X_test))
    assert cert.certified and cert.lm_test.mean_gap > 1.0 and cert.shuffle_test.mean_gap > 1.0


def test_a_decoder_that_ignores_z_is_never_certified():
    data = make_topic_corpus(10, 500, n_topics=8, vocab_size=20, length=12, support=3, seed=2)
    lm = -data.corpus.log_prob(data.X_test)
    encode, _ = oracle_model(data.corpus)
    rng = np.random.default_rng(0)
    for noise in (0.0, 0.1, 1.0):  # the decoder = the floor, plus per-sequence noise (e.g. another training run)
        jitter = torch.as_tensor(rng.normal(0, noise, len(lm)))
        index = {tuple(row): i for i, row in enumerate(data.X_test.tolist())}

        def ignores_z(z, x):
            rows = [index[tuple(r)] for r in x.tolist()]
            return torch.as_tensor(lm[rows]) + jitter[rows]
        cert = certify_sequence_model(encode, ignores_z, data.X_test, lm_nll=lm)
        assert not cert.certified and not cert.shuffle_test.passed
        # even a z-free decoder slightly *better* than the floor fails: the shuffled control does not move
        cert = certify_sequence_model(encode, lambda z, x: ignores_z(z, x) - 0.05, data.X_test, lm_nll=lm)
        assert not cert.certified


def test_certify_model_takes_sequence_models_through_the_language_model_floor():
    """shellvae.certify_model, the one entry point for any VAE: with lm_nll= it gives the sequence
    certificate (the same verdict as certify_sequence_model), without shell/geometry or lm_nll a clear error."""
    import shellvae

    data = make_topic_corpus(10, 500, n_topics=8, vocab_size=20, length=12, support=3, seed=2)
    encode, decode_nll = oracle_model(data.corpus)
    lm = -data.corpus.log_prob(data.X_test)
    cert = shellvae.certify_model(encode, decode_nll, data.X_test, lm_nll=lm)
    direct = certify_sequence_model(encode, decode_nll, data.X_test, lm_nll=lm)
    assert cert.certified and cert.to_dict() == direct.to_dict()
    with pytest.raises(ShellVAEError, match="lm_nll="):
        shellvae.certify_model(encode, decode_nll, data.X_test)


def test_paired_test():
    assert paired_test(np.full(10, 2.0), 1.0, 0.01).passed and not paired_test(np.zeros(10), 0.0, 0.01).passed
    test = paired_test(np.random.default_rng(0).normal(0.5, 1.0, 1000), 0.1, 0.01)
    assert test.passed and test.p_value < 0.01 and abs(test.std_error - 1 / math.sqrt(1000)) < 0.005
    with pytest.raises(ShellVAEError):
        paired_test([1.0], 0.0, 0.01)


def test_trained_models_free_bits_certified_vanilla_not():
    data = make_topic_corpus(2000, 400, n_topics=4, vocab_size=12, length=10, support=2, seed=1)
    settings = dict(latent_dim=4, embed_dim=16, hidden_dim=32, epochs=4, batch_size=64, lr=1e-2)
    vanilla = SequenceVAE("vanilla", **settings).fit(data.X_train)
    free_bits = SequenceVAE("free_bits", method_params={"free_bits": 0.5}, **settings).fit(data.X_train, lm=vanilla)
    assert vanilla.evaluate(data.X_test, iw_samples=2)["kl"] < 0.05
    assert not vanilla.certify(data.X_test).certified
    assert free_bits.certify(data.X_test).certified


# -- the feasible region on bags of tokens -------------------------------------------------------------------------
def test_region_on_bags_of_tokens(tiny):
    region = SequenceRegion(4, vocab_size=14, random_state=0).fit(tiny.X_train)
    bags = bag_of_tokens(tiny.X_train, 14)
    assert np.allclose(bags.sum(axis=1), 8) and region.W_ == 0.0 and region.data_W_ > 0 and region.feasible_
    assert math.isclose(region.geometry_.T_, 1.0) and np.allclose(region.transform(tiny.X_train), bags * region.scale_)
    centers = region.centers(torch.arange(5))
    assert torch.allclose(centers, torch.as_tensor(region.geometry_.centers_[region.geometry_.labels_[:5]],
                                                   dtype=torch.float32))
    # a constant bag (a decoder that ignores z) never gets below the collapse value
    from shellvae.core.contract import VAEOutput

    log_bag = torch.as_tensor(bags.mean(axis=0)).float().log().expand(len(bags), -1)
    rows = torch.zeros(len(bags), 8, 14)
    constant = VAEOutput(rows[:, 0, :2], rows[:, 0, :2], rows[:, 0, :2], rows, log_bag)
    all_centers = region.centers(torch.arange(len(bags)))
    # the mean bag is the best constant: it scores delta, the collapse value, exactly
    assert float(region.cluster_loss(region.bounded_output(constant), all_centers)) == pytest.approx(region.delta_,
                                                                                                   rel=1e-5)


def test_region_certificate_tells_a_constant_bag_from_a_topic_aware_one(tiny):
    region = SequenceRegion(4, vocab_size=14, random_state=0).fit(tiny.X_train)
    metrics = {"kl": 0.0, "active_units": 0, "mutual_info": 0.0}
    floor = region.delta_
    collapsed = {"bag_l_clu": floor, "bag_l_clu_shuffled": floor, "bag_collapse_floor": floor,
                 "bag_cluster_r2": 0.0, "bag_cluster_accuracy": 0.25, **metrics}
    assert not certify_region(collapsed, region).certified
    used = {**collapsed, "bag_l_clu": 0.5 * floor, "bag_cluster_r2": 0.5}
    assert certify_region(used, region).certified


# -- the command line ------------------------------------------------------------------------------------------------
def test_cli_trains_on_a_text_file(tmp_path):
    rng = np.random.default_rng(0)
    words = [["red", "green", "blue"], ["cat", "dog", "cow"]]
    lines = [" ".join(rng.choice(words[i % 2], size=rng.integers(2, 6))) for i in range(120)]
    path = write(tmp_path, "corpus.txt", "\n".join(lines))
    result = CliRunner().invoke(main, ["train-text", "--data", str(path), "--method", "free_bits", "-p", "free_bits=0.5",
                                       "--epochs", "1", "--latent-dim", "4", "--hidden-dim", "16", "--embed-dim", "8",
                                       "--iw-samples", "3", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # the printed verdict is the recorded one
    verdict = "CERTIFIED non-collapsed" if record["certified"] else "NOT certified"
    assert "held-out NLL" in result.output and verdict in result.output
    assert record["certificate"]["nll_lm"] == pytest.approx(record["nll_lm"], rel=1e-6)
    assert record["method"] == "free_bits" and record["dataset"] == "corpus.txt" and "nll_lm" in record
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch,")
    loaded = SequenceVAE.load(tmp_path / "run" / "model.pt")
    assert loaded.vocab_.index["cat"] >= N_SPECIAL


def test_cli_trains_on_the_generated_corpus(tmp_path):
    result = CliRunner().invoke(main, ["train-text", "--data", "corpus:topics:n_topics=2,vocab_size=6,length=5",
                                       "--n-train", "100", "--n-test", "50", "--method", "vanilla", "--epochs", "1",
                                       "--hidden-dim", "8", "--iw-samples", "2", "--quiet",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "oracle NLL" in result.output


@pytest.mark.parametrize("args, message", [
    (["--data", "BAD"], "not UTF-8"),
    (["--data", "MISSING"], "no such file"),
    (["--data", "GOOD", "--min-count", "2", "--data", "corpus:topics"], "text-file options"),
    (["--data", "corpus:words"], "corpus:topics"),
    (["--data", "corpus:topics:n_topics=x"], "not a number"),
])
def test_cli_gives_a_clear_error(tmp_path, args, message):
    paths = {"BAD": str(write(tmp_path, "bad.txt", b"ok line\n\xff\xfe broken\n")),
             "GOOD": str(write(tmp_path, "good.txt", "a b\nc d\n")), "MISSING": str(tmp_path / "nope.txt")}
    result = CliRunner().invoke(main, ["train-text", *[paths.get(a, a) for a in args], "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "Error:" in result.output and message in result.output, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("data", ["corpus:topics", "text.txt"])
def test_train_sends_token_sequences_to_train_text(tmp_path, data):
    """Sequences have a command of their own; `train` (vectors) names it instead of turning into it."""
    result = CliRunner().invoke(main, ["train", "--data", data, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "shellvae train-text" in result.output, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", ["--sigma2", "--arch", "--mmap", "--distributed", "--resume", "--seq-param"])
def test_train_text_has_no_vector_options_to_refuse(tmp_path, option):
    result = CliRunner().invoke(main, ["train-text", "--data", "corpus:topics", option, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "No such option" in result.output, result.output


@pytest.mark.parametrize("args, option", [
    (["--epochs", "0"], "--epochs"),
    (["--word-dropout", "2"], "--word-dropout"),
    (["--certificate-margin", "2"], "--certificate-margin"),
    (["--n-clusters", "1"], "--n-clusters"),
    (["-p", "free_bits=0.1", "-p", "free_bits=0.2"], "-p"),
    (["--decoder", "gru"], "--decoder"),
    (["--hidden-dim", "x"], "--hidden-dim"),
    (["--hidden-dim", "0"], "--hidden-dim"),
    (["--iw-samples", "0"], "--iw-samples"),
    (["--certificate-alpha", "0.9"], "--certificate-alpha"),
    (["--n-clusters", "x"], "--n-clusters"),
])
def test_cli_bad_option_values_are_usage_errors_as_for_vectors(tmp_path, args, option):
    """Exit 2 with "Invalid value for OPTION", before any data is read, as `shellvae train` on arrays."""
    result = CliRunner().invoke(main, ["train-text", "--data", "corpus:topics", *args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and re.search(f"Invalid value for '?{option}'?", result.output), result.output
    assert not (tmp_path / "run").exists()


def test_cli_refuses_unwritable_outputs_before_training(tmp_path):
    (tmp_path / "run" / "model.pt").mkdir(parents=True)  # the model file cannot be written: refused up front
    result = CliRunner().invoke(main, ["train-text", "--data", "corpus:topics", "--epochs", "1", "--quiet",
                                       "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "model.pt is a folder" in result.output, result.output
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["model.pt"]  # nothing trained, nothing written


def test_expected_counts_and_the_region_measurements(tiny):
    chains = tiny.corpus
    X, topics = chains.sample(20_000, np.random.default_rng(3))
    bags = bag_of_tokens(X, 14)[:, N_SPECIAL:]
    assert np.abs(bags[topics == 0].mean(axis=0) - chains.expected_counts()[0]).max() < 0.1
    region = SequenceRegion(4, vocab_size=14, random_state=0).fit(tiny.X_train)
    # a "decoder" whose teacher-forced predictions are the true next-token distributions given the topic
    from shellvae.evaluation.bag_metrics import teacher_forced_l_clu, topic_bag_l_clu
    uniform = teacher_forced_l_clu(lambda x: torch.zeros(*x.shape, 14), tiny.X_test, region)
    assert uniform > region.delta_  # a constant prediction cannot beat the collapse value
    assert topic_bag_l_clu(chains, tiny.X_test, tiny.y_test, region) < region.delta_


def test_transformer_decoder_trains_and_certifies(tiny):
    est = small("free_bits", decoder="transformer", embed_dim=16).fit(tiny.X_train[:200])
    cert = est.certify(tiny.X_test[:100])
    oracle = tiny.corpus.oracle(tiny.X_test[:100])["oracle_nll"]  # no model beats the true one on average
    assert oracle < cert.nll_lm and oracle < cert.nll_own and est.sample(2).shape == (2, 8)


def test_z_only_bag_depends_on_z_alone():
    """Not on the tokens, nor on where a sequence ends: a decoder that ignores z gives one bag for all."""
    torch.manual_seed(0)
    model = sequence_vae(12, 6, 2, embed_dim=8, hidden_dim=8).eval()
    z = torch.randn(1, 2).expand(2, 2)
    x = torch.tensor([[5, 6, 7, 8, 9, EOS], [9, EOS, PAD, PAD, PAD, PAD]])
    bag = model.z_only_bag(z, x)
    assert torch.allclose(bag[0], bag[1]) and torch.allclose(bag.sum(dim=1), torch.full((2,), 6.0))
    assert not torch.allclose(model.z_only_bag(z + 1, x), bag)
    assert np.array_equal(bag_of_tokens(x.numpy(), 12)[1, [PAD, 9, EOS]], [4, 1, 1])
