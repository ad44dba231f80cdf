"""The method itself, with no training loop: the shell map (``shell``), the cluster geometry
(``variances``, ``kmeans``, ``autok``, ``geometry``, ``theory``), the networks (``model`` for vectors,
``sequence_model`` for token sequences), the loss terms (``objectives``) and the feasible regions
(``region``, and ``sequence_region`` on bags of tokens)."""
