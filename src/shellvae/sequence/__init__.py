"""Sequence VAEs: posterior collapse where it bites, with autoregressive decoders over tokens.

- ``data``: token sequences (a seeded topic-Markov generator with an exact likelihood oracle, a
  loader for a user's text with one sequence per line);
- ``model``: an LSTM encoder, an autoregressive LSTM (or small Transformer) decoder fed z at every
  step, word dropout, and the z-free language model of the same architecture;
- ``estimator``: ``SequenceVAE``, trained by every registered method through the one training loop;
- ``metrics``: importance-weighted NLL and perplexity, ELBO, KL, MI, active units, the oracle;
- ``certificate``: the language-model floor, a certificate that needs no Gaussian decoder;
- ``region``: the paper's cluster-aware feasible region on bags of tokens (the shell methods).

docs/sequences.md describes them, with the results on the generated corpus.
"""

from shellvae.sequence.certificate import (CERTIFICATE_ALPHA, CERTIFICATE_MARGIN, PairedTest, SequenceCertificate,
                                           certify_sequence_model, paired_test)
from shellvae.sequence.data import (BOS, EOS, PAD, SPECIALS, UNK, SequenceDataset, TopicChains, Vocabulary,
                                    make_topic_chains, make_topic_corpus)
from shellvae.sequence.estimator import SequenceVAE
from shellvae.sequence.inputs import build_vocabulary, check_tokens, encode_lines, load_sequences, load_text
from shellvae.sequence.metrics import elbo, evaluate_sequences, iw_log_likelihood, perplexity
from shellvae.sequence.model import (LanguageModel, SequenceVAEModel, language_model, sequence_vae, token_nll,
                                     token_nll_per_sequence)
from shellvae.sequence.region import SequenceRegion, bag_of_tokens, certify_region

__all__ = [
    "BOS", "CERTIFICATE_ALPHA", "CERTIFICATE_MARGIN", "EOS", "LanguageModel", "PAD", "PairedTest", "SPECIALS",
    "SequenceCertificate", "SequenceDataset", "SequenceRegion", "SequenceVAE", "SequenceVAEModel", "TopicChains",
    "UNK", "Vocabulary", "bag_of_tokens", "build_vocabulary", "certify_region", "certify_sequence_model",
    "check_tokens", "elbo", "encode_lines", "evaluate_sequences", "iw_log_likelihood", "language_model",
    "load_sequences", "load_text", "make_topic_chains", "make_topic_corpus", "paired_test", "perplexity",
    "sequence_vae", "token_nll", "token_nll_per_sequence",
]
