"""The ``tureen`` command line."""
