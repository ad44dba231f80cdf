"""Token sequences: the token-id convention, the vocabulary (and building one from tokenised lines),
and a seeded generator whose likelihood is known exactly (a user's text is read by ``text.py``,
Debian's fortunes by ``fortunes.py``).

Token ids follow one convention everywhere in the sequence family: 0 = ``<pad>`` (after the
end of a sequence only), 1 = ``<unk>`` (unknown words, and the word-dropout token), 2 = ``<bos>``
(the decoder's first input, never in the data), 3 = ``<eos>`` (ends a line of text), and the
vocabulary's own tokens from 4 on. A data set is an integer array (N, T): one sequence a row,
padded with 0 after its end.

The generator (``make_topic_corpus``) draws each sequence from one of K topics; a topic is a
sparse first-order Markov chain over the content tokens (each token's next-token distribution is
supported on ``support`` tokens, with Dirichlet weights; a start distribution likewise), and every
sequence has the same length. So every likelihood has an oracle (``TopicChains``):

- log p(x | k) = log s_k(x_0) + sum_t log P_k(x_{t-1}, x_t), exactly, for every sequence;
- log p(x) = log sum_k pi_k p(x | k), exactly (the mixture over topics);
- H(X | K = k) = H(s_k) + sum_{t=1}^{T-1} sum_v P(X_{t-1} = v | k) H(P_k(v, .)), exactly, by
  dynamic programming over the chain's state distribution; H(X | K) <= H(X) <= H(X | K) + H(K).

The held-out oracle is the mean of -log p(x) over the held-out sequences (the true model's
NLL on them), and mean -log p(x | k_i) (the true model told each sequence's topic) bounds what
a perfect latent could add.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from shellvae.errors import ShellVAEError

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
N_SPECIAL = len(SPECIALS)


# -- vocabulary ----------------------------------------------------------------------------------------
@dataclass
class Vocabulary:
    """Token strings by id: the four specials, then the vocabulary's tokens."""

    tokens: list[str]

    def __post_init__(self):
        self.tokens = list(self.tokens)
        if tuple(self.tokens[:N_SPECIAL]) != SPECIALS:
            raise ShellVAEError(f"a vocabulary starts with the special tokens {SPECIALS}.")
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ShellVAEError("a vocabulary lists each token once.")

    @classmethod
    def from_words(cls, words) -> Vocabulary:
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, words) -> list[int]:
        """Token ids of ``words`` (an unknown word is ``<unk>``)."""
        return [self.index.get(w, UNK) for w in words]

    def decode(self, ids) -> list[str]:
        """The words of one row of ids, up to its first ``<eos>`` or ``<pad>``."""
        words = []
        for i in np.asarray(ids).tolist():
            if i in (PAD, EOS):
                break
            words.append(self.tokens[i] if 0 <= i < len(self.tokens) else SPECIALS[UNK])
        return words


def build_vocabulary(lines, *, min_count: int = 1, max_size: int | None = None) -> Vocabulary:
    """The vocabulary of ``lines``: words seen at least ``min_count`` times, the ``max_size`` most
    frequent (ties by the word), in that order after the specials."""
    counts = Counter(w for words in lines for w in words)
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS),
                   key=lambda w: (-counts[w], w))
    if max_size is not None:
        words = words[:max_size]
    return Vocabulary.from_words(words)


def encode_lines(lines, vocab: Vocabulary, length: int | None = None) -> np.ndarray:
    """(N, length) int64 ids: each line's ids, then ``<eos>``, then ``<pad>``; longer lines are cut to
    ``length - 1`` words (the ``<eos>`` stays). ``length`` None: the longest line + 1."""
    if length is None:
        length = max(len(words) for words in lines) + 1
    if length < 2:
        raise ShellVAEError(f"length={length}: a sequence needs room for one word and <eos>.")
    X = np.full((len(lines), length), PAD, dtype=np.int64)
    for i, words in enumerate(lines):
        ids = vocab.encode(words[:length - 1]) + [EOS]
        X[i, :len(ids)] = ids
    return X


@dataclass
class SequenceDataset:
    """A train/test split of token sequences: ``X_*`` int64 (N, T), padded with 0 (``<pad>``).

    ``y_*``: each sequence's label, the topic (generated data) or the category (``load_fortunes``), or
    None (a text file). ``corpus``: the generator's
    ``TopicChains`` (the exact likelihood oracle) or None (a user's text).
    """

    name: str
    X_train: np.ndarray
    X_test: np.ndarray
    vocab: Vocabulary
    y_train: np.ndarray | None = None
    y_test: np.ndarray | None = None
    corpus: TopicChains | None = None
    description: str = ""
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"SequenceDataset({self.name!r}, train={self.X_train.shape}, test={self.X_test.shape}, "
                f"vocabulary={len(self.vocab)} tokens)")


# -- the generator -------------------------------------------------------------------------------------
def _entropy(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis`` (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=axis)


@dataclass
class TopicChains:
    """K topics, each a first-order Markov chain over V content tokens, and the exact likelihoods.

    ``weights``: pi (K,); ``start``: s_k (K, V); ``transition``: P_k (K, V, V), rows summing to 1.
    Content token j has id ``N_SPECIAL + j``; every sequence has ``length`` tokens.
    """

    weights: np.ndarray
    start: np.ndarray
    transition: np.ndarray
    length: int

    @property
    def n_topics(self) -> int:
        return len(self.weights)

    @property
    def n_content(self) -> int:
        return self.start.shape[1]

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """n sequences (ids, (n, length) int64) and their topics (n,), drawn with ``rng``."""
        topics = rng.choice(self.n_topics, size=n, p=self.weights)
        states = np.empty((n, self.length), dtype=np.int64)
        states[:, 0] = _draw(self.start[topics], rng)
        for t in range(1, self.length):
            states[:, t] = _draw(self.transition[topics, states[:, t - 1]], rng)
        return states + N_SPECIAL, topics

    def _states(self, X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.length:
            raise ShellVAEError(f"X has shape {X.shape}; the corpus' sequences are (n, {self.length}).")
        states = X.astype(np.int64) - N_SPECIAL
        if states.min(initial=0) < 0 or states.max(initial=0) >= self.n_content:
            raise ShellVAEError("X holds ids outside the corpus' content tokens.")
        return states

    def log_prob_given_topic(self, X) -> np.ndarray:
        """log p(x | k) of every sequence and topic: (N, K) float64 (-inf where impossible)."""
        s = self._states(X)
        with np.errstate(divide="ignore"):
            log_start, log_trans = np.log(self.start), np.log(self.transition)
        out = log_start[:, s[:, 0]].T  # (N, K)
        for t in range(1, self.length):
            out = out + log_trans[:, s[:, t - 1], s[:, t]].T
        return out

    def log_prob(self, X) -> np.ndarray:
        """log p(x) = log sum_k pi_k p(x | k) of every sequence: (N,) float64, exact."""
        with np.errstate(divide="ignore"):
            return logsumexp(self.log_prob_given_topic(X) + np.log(self.weights), axis=1)

    def topic_posterior(self, X) -> np.ndarray:
        """p(k | x), (N, K): what a perfect latent could know about each sequence's topic."""
        with np.errstate(divide="ignore"):
            joint = self.log_prob_given_topic(X) + np.log(self.weights)
        return np.exp(joint - logsumexp(joint, axis=1, keepdims=True))

    def entropy_given_topic(self) -> np.ndarray:
        """H(X | K = k) of each topic, (K,), exact: H(s_k) + sum_t sum_v P(X_{t-1} = v | k) H(P_k(v, .))."""
        row_entropy = _entropy(self.transition)  # (K, V): H(P_k(v, .))
        state = self.start.copy()  # P(X_0 = v | k)
        total = _entropy(self.start)
        for _ in range(1, self.length):
            total = total + (state * row_entropy).sum(axis=1)
            state = np.einsum("kv,kvw->kw", state, self.transition)
        return total

    def expected_counts(self) -> np.ndarray:
        """E[count of each content token | K = k] over a sequence, (K, V): the sum over positions of the
        chain's state distributions (a perfect topic-aware decoder's bag of tokens)."""
        state, total = self.start.copy(), np.zeros_like(self.start)
        for _ in range(self.length):
            total += state
            state = np.einsum("kv,kvw->kw", state, self.transition)
        return total

    def conditional_entropy(self) -> float:
        """H(X | K) = sum_k pi_k H(X | K = k), nats per sequence, exact."""
        return float(self.weights @ self.entropy_given_topic())

    def entropy_bounds(self) -> tuple[float, float]:
        """H(X | K) <= H(X) <= H(X | K) + H(K) (nats per sequence)."""
        h = self.conditional_entropy()
        return h, h + float(_entropy(self.weights))

    def oracle(self, X, topics=None) -> dict:
        """The true model's numbers on sequences X: ``oracle_nll`` = mean -log p(x) (exact, the best
        any model can expect on them), ``oracle_nll_topic`` = mean -log p(x | k_i) with each
        sequence's true ``topics`` (what the true model scores when told the topic), the exact
        ``entropy_given_topic`` H(X | K) and the upper bound ``entropy_upper`` = H(X | K) + H(K), all
        in nats per sequence; ``oracle_ppl`` = exp(oracle_nll / length)."""
        nll = -self.log_prob(X)
        low, high = self.entropy_bounds()
        out = {"oracle_nll": float(nll.mean()), "oracle_ppl": float(math.exp(nll.mean() / self.length)),
               "entropy_given_topic": low, "entropy_upper": high}
        if topics is not None:
            topics = np.asarray(topics)
            given = -self.log_prob_given_topic(X)[np.arange(len(topics)), topics]
            out["oracle_nll_topic"] = float(given.mean())
        return out

    def state_dict(self) -> dict:
        return {"weights": self.weights, "start": self.start, "transition": self.transition, "length": self.length}

    @classmethod
    def from_state_dict(cls, state: dict) -> TopicChains:
        return cls(np.asarray(state["weights"]), np.asarray(state["start"]), np.asarray(state["transition"]),
                   int(state["length"]))


def _draw(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One index per row of ``probs`` (n, V), by inverse CDF."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((np.cumsum(probs, axis=1) < u).sum(axis=1), probs.shape[1] - 1)


def _sparse_rows(n_rows: int, n_cols: int, support: int, concentration: float, rng) -> np.ndarray:
    """(n_rows, n_cols) probability rows, each supported on ``support`` random columns, Dirichlet weights."""
    rows = np.zeros((n_rows, n_cols))
    for i in range(n_rows):
        cols = rng.choice(n_cols, size=support, replace=False)
        rows[i, cols] = rng.dirichlet(np.full(support, concentration))
    return rows


def make_topic_chains(n_topics: int = 8, vocab_size: int = 40, length: int = 24, support: int = 3,
                      concentration: float = 1.0, seed: int = 0) -> TopicChains:
    """K random sparse Markov chains (uniform topic weights); see ``make_topic_corpus``."""
    for name, value, low in (("n_topics", n_topics, 1), ("vocab_size", vocab_size, 2), ("length", length, 1),
                             ("support", support, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ShellVAEError(f"{name}={value!r}: give an integer >= {low}.")
    if support > vocab_size:
        raise ShellVAEError(f"support={support} is more than vocab_size={vocab_size} tokens.")
    if not (isinstance(concentration, (int, float)) and concentration > 0 and math.isfinite(concentration)):
        raise ShellVAEError(f"concentration={concentration!r}: give a positive number (the Dirichlet's).")
    rng = np.random.default_rng(seed)
    start = _sparse_rows(n_topics, vocab_size, support, concentration, rng)
    transition = np.stack([_sparse_rows(vocab_size, vocab_size, support, concentration, rng)
                           for _ in range(n_topics)])
    return TopicChains(np.full(n_topics, 1.0 / n_topics), start, transition, int(length))


def make_topic_corpus(n_train: int = 10_000, n_test: int = 2_000, *, n_topics: int = 8, vocab_size: int = 40,
                      length: int = 24, support: int = 3, concentration: float = 1.0,
                      seed: int = 0) -> SequenceDataset:
    """Topic-conditioned token sequences with an exact likelihood oracle (the module docstring).

    ``n_topics`` chains over ``vocab_size`` content tokens; each token's next-token distribution
    (and each topic's start distribution) is supported on ``support`` tokens (the sparsity) with
    Dirichlet(``concentration``) weights; every sequence has ``length`` tokens. The chains and the
    sequences come from ``seed``. ``y_*`` are the topics, ``corpus`` the chains (``.oracle``).
    """
    for name, value in (("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ShellVAEError(f"{name}={value!r}: give a positive integer.")
    chains = make_topic_chains(n_topics, vocab_size, length, support, concentration, seed)
    X, topics = chains.sample(n_train + n_test, np.random.default_rng([seed, 1]))
    words = [f"t{j}" for j in range(vocab_size)]
    low, high = chains.entropy_bounds()
    description = (f"generated: {n_topics} topics, each a sparse Markov chain over {vocab_size} tokens (support "
                   f"{support}), sequences of {length} tokens; H(X|K) = {low:.3f} nats per sequence, H(X) <= "
                   f"{high:.3f}")
    return SequenceDataset("corpus:topics", X[:n_train], X[n_train:], Vocabulary.from_words(words),
                           topics[:n_train], topics[n_train:], chains, description,
                           {"n_topics": n_topics, "vocab_size": vocab_size, "length": length, "support": support,
                            "concentration": concentration, "seed": seed})
