"""``python -m tureen`` is the ``tureen`` command."""

from tureen.cli.main import main

main()
