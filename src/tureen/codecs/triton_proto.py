"""The data plane's answers for Triton's gRPC extensions as protobuf messages (statistics,
model configuration, shared-memory status) and repository request parameters as values."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from tureen.codecs.pb import inference_pb2 as pb


def statistics_message(stats: dict[str, Any]) -> pb.ModelStatisticsResponse:
    out = pb.ModelStatisticsResponse()
    json_format.ParseDict(stats, out)
    return out


def config_message(config: dict[str, Any]) -> pb.ModelConfigResponse:
    return pb.ModelConfigResponse(config=json_format.ParseDict(config, pb.ModelConfig()))


def shm_status_message(regions: list[dict[str, Any]]) -> pb.SystemSharedMemoryStatusResponse:
    out = pb.SystemSharedMemoryStatusResponse()
    for r in regions:
        out.regions[r["name"]].CopyFrom(
            pb.SystemSharedMemoryStatusResponse.RegionStatus(**r))
    return out


def repository_parameters(params: Any) -> dict[str, Any]:
    """``map<string, ModelRepositoryParameter>`` as {name: bool | int | str | bytes}."""
    out: dict[str, Any] = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        out[key] = getattr(p, which) if which else None
    return out
