"""Offline: point-in-time training sets and batch reads for materialization."""
