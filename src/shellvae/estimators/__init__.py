"""The scikit-learn style estimators: ``ShellVAE`` (vectors, ``shell_vae``) and ``SequenceVAE``
(token sequences, ``sequence_vae``), their parameter checks (``checks``) and saved files
(``persistence``)."""
