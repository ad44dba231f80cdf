"""Sequence training throughput of ``SequenceVAE`` against a hand-written PyTorch LSTM-VAE loop, and
the cost of held-out importance-weighted evaluation against a naive loop over the samples.

**Training.** The same nets on both sides: an LSTM encoder (embedding 64, LSTM 128, its state at
each sequence's last token -> mu, logvar of 16 dimensions) and an LSTM decoder fed z at every step
(embedding 64 + z -> LSTM 128 -> logits over the vocabulary), batch 64, Adam at 5e-3, the
negative ELBO (cross-entropy summed over non-<pad> tokens, exact KL; method "vanilla"). The
hand-written side is what a user writes in plain PyTorch: its own modules, ``torch.optim.Adam``,
a ``randperm`` per epoch, ``loss.item()`` per step. Each repeat trains one epoch of each, on a
freshly built model, interleaved (shellvae, hand, shellvae, ...) so that load on a shared machine
hits both alike; the first repeat is a discarded warm-up and the ratios are of medians. Times:
the epoch's loop alone (shellvae: the loop's own ``train_time_s``) and the whole call (shellvae:
``SequenceVAE(..., epochs=1, patience=None).fit(X)``, with its checks and set-up; hand: building the model and
the optimiser, then the epoch). Tokens per second count the scored (non-<pad>) tokens.

**Evaluation.** On ``--test`` held-out sequences with ``--iw-samples`` importance samples:
``SequenceVAE.evaluate`` (every metric) and the library's ``iw_log_likelihood`` (samples decoded
in chunks of up to 2,048 sequences) against a naive loop that decodes the held-out set once per
sample; both estimates are printed (they agree within Monte Carlo noise).

**The corpus** (``--corpus random``, the default): sequences of 4-20 words + <eos> (lengths
uniform), padded to 21, words drawn from a Zipf law (exponent 1.1) over a 2,000-token vocabulary,
seeded. ``--corpus fortunes`` reads Debian's fortunes (``apt-get install fortunes``) instead:
records of the non-offensive files, lowercased, split on whitespace, cut to 20 words, the 1,996
most frequent words (the rest <unk>).

    python bench/text_speed.py                                    # 5,000 x 21, vocabulary 2,000
    python bench/text_speed.py --repeats 5 --test 500 --iw-samples 100 > docs/results/text_speed.txt
    python bench/text_speed.py --corpus fortunes --threads 2
    python bench/text_speed.py --skip-eval --hand-first            # the other order in each repeat
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shellvae import SequenceVAE
from shellvae.evaluation.sequence_metrics import iw_log_likelihood

PAD, UNK, BOS, EOS, N_SPECIAL = 0, 1, 2, 3, 4
FORTUNES = Path("/usr/share/games/fortunes")


# -- the corpus ------------------------------------------------------------------------------------------
def random_corpus(n: int, length: int, vocab_size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    words = rng.zipf(1.1, size=(n, length - 1))
    words = N_SPECIAL + (words - 1) % (vocab_size - N_SPECIAL)
    X = np.zeros((n, length), dtype=np.int64)
    for i, k in enumerate(rng.integers(4, length, size=n)):  # k words, then <eos>, then <pad>
        X[i, :k] = words[i, :k]
        X[i, k] = EOS
    return X


def fortunes_corpus(n: int, length: int, vocab_size: int, seed: int) -> np.ndarray:
    records = []
    for path in sorted(FORTUNES.glob("*")):
        if path.is_file() and not path.suffix and "off" not in path.parts:
            text = path.read_text(encoding="utf-8", errors="replace")
            records += [r.lower().split()[:length - 1] for r in text.split("\n%\n") if r.split()]
    if not records:
        raise SystemExit(f"no fortunes under {FORTUNES}: apt-get install fortunes (or use --corpus random)")
    counts = Counter(w for r in records for w in r)
    index = {w: N_SPECIAL + i for i, (w, _) in enumerate(counts.most_common(vocab_size - N_SPECIAL))}
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(records), size=n, replace=len(records) < n)
    X = np.zeros((n, length), dtype=np.int64)
    for i, j in enumerate(chosen):
        ids = [index.get(w, UNK) for w in records[j]] + [EOS]
        X[i, :len(ids)] = ids
    return X


# -- the hand-written LSTM-VAE -----------------------------------------------------------------------------
class HandVAE(nn.Module):
    """The LSTM-VAE as one writes it in plain PyTorch: the same layers and sizes as shellvae's."""

    def __init__(self, vocab_size: int, latent_dim: int, embed_dim: int, hidden_dim: int):
        super().__init__()
        self.enc_embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD)
        self.enc_lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.enc_head = nn.Linear(hidden_dim, 2 * latent_dim)
        self.dec_embed = nn.Embedding(vocab_size, embed_dim)
        self.dec_lstm = nn.LSTM(embed_dim + latent_dim, hidden_dim, batch_first=True)
        self.dec_head = nn.Linear(hidden_dim, vocab_size)

    def forward(self, x):
        h, _ = self.enc_lstm(self.enc_embed(x))
        last = (x != PAD).sum(1) - 1
        mu, logvar = self.enc_head(h[torch.arange(len(x)), last]).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        inputs = torch.cat([torch.full_like(x[:, :1], BOS), x[:, :-1]], dim=1)
        e = self.dec_embed(inputs)
        h, _ = self.dec_lstm(torch.cat([e, z[:, None].expand(-1, e.shape[1], -1)], dim=-1))
        logits = self.dec_head(h)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.reshape(-1), ignore_index=PAD,
                              reduction="sum") / len(x)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1).mean()
        return nll + kl


def cpu() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far: system time is mostly page faults here."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def hand_epoch(X: torch.Tensor, args, seed: int) -> tuple[float, ...]:
    """(loop, whole, user CPU, system CPU) seconds of building the hand-written model and training it one epoch."""
    t0, c0 = time.perf_counter(), cpu()
    torch.manual_seed(seed)
    model = HandVAE(args.vocab, args.latent_dim, args.embed_dim, args.hidden_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    t1 = time.perf_counter()
    total = 0.0
    for idx in torch.randperm(len(X)).split(args.batch_size):
        optimizer.zero_grad()
        loss = model(X[idx])
        loss.backward()
        optimizer.step()
        total += loss.item()
    t2, c2 = time.perf_counter(), cpu()
    return t2 - t1, t2 - t0, c2[0] - c0[0], c2[1] - c0[1]


def shellvae_epoch(X: np.ndarray, args, seed: int) -> tuple[tuple[float, ...], SequenceVAE]:
    """(loop, whole, user CPU, system CPU) seconds of ``SequenceVAE.fit`` for one epoch, and the estimator."""
    t0, c0 = time.perf_counter(), cpu()
    # patience=None: one epoch on all of X, no held-out rows or validation (the hand-written loop has none)
    est = SequenceVAE("vanilla", latent_dim=args.latent_dim, embed_dim=args.embed_dim, hidden_dim=args.hidden_dim,
                      epochs=1, patience=None, batch_size=args.batch_size, lr=args.lr, vocab_size=args.vocab,
                      language_model=False, random_state=seed).fit(X)
    t1, c1 = time.perf_counter(), cpu()
    return (est.history_[0]["train_time_s"], t1 - t0, c1[0] - c0[0], c1[1] - c0[1]), est


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- evaluation ------------------------------------------------------------------------------------------
@torch.no_grad()
def naive_iw(model, X: torch.Tensor, n_samples: int, seed: int) -> torch.Tensor:
    """log p_K(x) with one decode of the whole held-out set per importance sample."""
    gen = torch.Generator().manual_seed(seed)
    mu, logvar = model.encode(X)
    std = (0.5 * logvar).exp()
    weights = []
    for _ in range(n_samples):
        eps = torch.randn(mu.shape, generator=gen)
        z = mu + eps * std
        log_px = model.log_likelihood(z, X).double()
        weights.append(log_px - 0.5 * (z.double().pow(2) - eps.double().pow(2) - logvar.double()).sum(-1))
    return torch.logsumexp(torch.stack(weights), 0) - np.log(n_samples)


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", choices=("random", "fortunes"), default="random")
    parser.add_argument("--train", type=int, default=5_000)
    parser.add_argument("--test", type=int, default=500)
    parser.add_argument("--length", type=int, default=21)
    parser.add_argument("--vocab", type=int, default=2_000)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--repeats", type=int, default=5, help="timed epochs of each, after one warm-up")
    parser.add_argument("--iw-samples", type=int, default=100)
    parser.add_argument("--eval-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--hand-first", action="store_true", help="each repeat trains the hand-written loop first")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    make = random_corpus if args.corpus == "random" else fortunes_corpus
    X_all = make(args.train + args.test, args.length, args.vocab, seed=0)
    X_np, X_test = X_all[:args.train], X_all[args.train:]
    X = torch.as_tensor(X_np)
    tokens = int((X_np != PAD).sum())
    malloc = " ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_"))
    print(f"# bench/text_speed.py: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s), {'hand-written' if args.hand_first else 'shellvae'} first, load "
          f"average {os.getloadavg()[0]:.2f} at start; malloc settings: {malloc or 'glibc defaults'}")
    print(f"corpus {args.corpus}: {args.train} training sequences x {args.length} positions ({tokens} scored tokens, "
          f"{tokens / args.train:.1f} a sequence), {args.test} held-out, vocabulary {args.vocab}; nets: embedding "
          f"{args.embed_dim}, LSTM {args.hidden_dim}, latent {args.latent_dim}; batch {args.batch_size}, "
          f"Adam {args.lr}")

    est = None
    if not args.skip_train:
        runs = {"shellvae": [], "hand": []}
        for r in range(args.repeats + 1):
            if args.hand_first:
                runs["hand"].append(hand_epoch(X, args, seed=r))
            times, est = shellvae_epoch(X_np, args, seed=r)
            runs["shellvae"].append(times)
            if not args.hand_first:
                runs["hand"].append(hand_epoch(X, args, seed=r))
            print(f"  repeat {r}{' (warm-up, discarded)' if r == 0 else ''}: " + ", ".join(
                f"{name} {rows[-1][0]:.3f} s loop / {rows[-1][1]:.3f} s whole / CPU {rows[-1][2]:.3f} s user + "
                f"{rows[-1][3]:.3f} s system"
                for name, rows in runs.items()))
        hand_params = n_params(HandVAE(args.vocab, args.latent_dim, args.embed_dim, args.hidden_dim))
        print(f"parameters: shellvae {n_params(est.model_)}, hand-written {hand_params}")
        med = {name: [statistics.median(v[i] for v in rows[1:]) for i in (0, 1, 2, 3)] for name, rows in runs.items()}
        for name in runs:
            loop, whole, user, system = med[name]
            print(f"{name:>9}: epoch loop {loop:.3f} s = {tokens / loop:,.0f} tokens/s; whole call {whole:.3f} s = "
                  f"{tokens / whole:,.0f} tokens/s; user CPU {user:.3f} s = {tokens / user:,.0f} tokens per user CPU "
                  f"second; system CPU {system:.3f} s (medians of {args.repeats})")
        kinds = ("epoch loop, wall", "whole call, wall", "whole call, user CPU")
        print("throughput shellvae / hand-written: " + ", ".join(
            f"{med['hand'][i] / med['shellvae'][i]:.3f} ({what})" for i, what in enumerate(kinds))
            + "; > 1 means shellvae is faster")
    if est is None:
        _, est = shellvae_epoch(X_np[:256], args, seed=0)

    if args.skip_eval:
        print(f"# load average {os.getloadavg()[0]:.2f} at the end")
        return
    model = est.model_.eval()
    Xt = torch.as_tensor(X_test)
    print(f"held-out evaluation: {len(X_test)} sequences, {args.iw_samples} importance samples each")
    # the library's default decodes up to 2,048 sequences at once (8 samples of 256); "small chunks"
    # decodes 256 (one sample of 256): the logits of a chunk, (rows, T, V) floats, then stay smaller
    runs = {
        "evaluate() (every metric)": lambda: est.evaluate(X_test, iw_samples=args.iw_samples)["nll_iw"],
        "iw_log_likelihood (library)": lambda: -iw_log_likelihood(
            model.encode, model.log_likelihood, Xt, n_samples=args.iw_samples).mean(),
        "iw_log_likelihood, max_decode_rows=256": lambda: -iw_log_likelihood(
            model.encode, model.log_likelihood, Xt, n_samples=args.iw_samples, max_decode_rows=256).mean(),
        "naive loop over samples": lambda: -naive_iw(model, Xt, args.iw_samples, seed=1).mean(),
    }
    times = {name: [] for name in runs}
    nll = {}
    for _ in range(args.eval_repeats):
        for name, run in runs.items():
            nll[name], wall, cpu = timed(run)
            times[name].append((wall, cpu))
    med = {name: [statistics.median(t[i] for t in v) for i in (0, 1)] for name, v in times.items()}
    for name in runs:
        print(f"  {name}: {med[name][0]:.3f} s wall, {med[name][1]:.3f} s CPU; NLL {float(nll[name]):.3f} nats")
    lib, naive = med["iw_log_likelihood (library)"], med["naive loop over samples"]
    print(f"naive / library time for the importance-weighted bound: {naive[0] / lib[0]:.3f} wall, "
          f"{naive[1] / lib[1]:.3f} CPU (medians of {args.eval_repeats}); > 1 means the library is faster")
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
