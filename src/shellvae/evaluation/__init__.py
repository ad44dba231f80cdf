"""What a trained model is measured by: the held-out metrics (``metrics`` for Gaussian decoders,
``sequence_metrics`` for autoregressive ones), the importance-weighted likelihood (``likelihood``),
linear and k-NN probes (``probes``), the certificates (``certificate``: the cluster-aware region;
``sequence_certificate``: the language-model floor; ``any_model``: either, for a model you trained
yourself) and the data diagnosis before training (``diagnose``)."""
