"""The registry: definitions (and lifecycle records) at numbered versions."""
