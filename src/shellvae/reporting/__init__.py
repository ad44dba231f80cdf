"""Turning results into records, tables and figures: ``results`` (a fit's JSON record),
``tables`` (Markdown/CSV tables and the history CSV), ``figures`` (matplotlib), ``text_samples`` (a sequence
VAE's prior samples, reconstructions and homotopy as Markdown)."""
