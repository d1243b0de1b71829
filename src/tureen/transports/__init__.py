"""Transports: wire formats in front of ``tureen.serving.DataPlane`` (REST, gRPC)."""
