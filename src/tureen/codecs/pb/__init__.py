"""The OIP gRPC messages (``inference_pb2``), generated from ``inference.proto``."""
