"""OIP gRPC: ``inference.GRPCInferenceService`` over ``DataPlane``.

``h2server.start_h2_server`` is tureen's own server (HTTP/2 and gRPC framing on asyncio);
``servicer.add_inference_service`` registers the same handlers on a ``grpc.aio`` server.
"""

from __future__ import annotations

from typing import Any

from tureen.transports.grpc.handlers import SERVICE_NAME

__all__ = ["SERVICE_NAME", "add_inference_service", "start_h2_server"]


def __getattr__(name: str) -> Any:  # the grpc package is imported only for the fallback
    if name == "add_inference_service":
        from tureen.transports.grpc.servicer import add_inference_service

        return add_inference_service
    if name == "start_h2_server":
        from tureen.transports.grpc.h2server import start_h2_server

        return start_h2_server
    raise AttributeError(name)
