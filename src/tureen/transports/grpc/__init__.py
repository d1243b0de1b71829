"""OIP gRPC: ``inference.GRPCInferenceService`` over ``DataPlane`` (see ``servicer``)."""

from tureen.transports.grpc.servicer import SERVICE_NAME, add_inference_service

__all__ = ["SERVICE_NAME", "add_inference_service"]
