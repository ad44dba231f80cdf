"""The scikit-learn style estimators: ``ShellVAE`` (vectors, ``shell_vae``) and ``SequenceVAE``
(token sequences, ``sequence_vae``). What both share (the common hyperparameter checks, building the
method, the fit check, the saved file) is written once in ``base``; ``checks`` holds the checks only
``ShellVAE`` needs (its networks, shell and checkpoint)."""
