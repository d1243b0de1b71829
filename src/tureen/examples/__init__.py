"""Example feature repos created by `tureen init` and `tureen quickstart`."""
