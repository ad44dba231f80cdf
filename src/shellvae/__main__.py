"""``python -m shellvae ...`` is the ``shellvae`` command."""

from shellvae.cli import main

main()
