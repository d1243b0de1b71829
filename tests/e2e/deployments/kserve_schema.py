"""The part of KServe's InferenceService (serving.kserve.io/v1beta1) schema tureen emits.

Written from KServe's v1beta1 API reference: InferenceServiceSpec{predictor (required),
transformer}, ComponentExtensionSpec (minReplicas, maxReplicas, canaryTrafficPercent, logger,
batcher, ...), PredictorSpec.model (ModelSpec: modelFormat, protocolVersion, storageUri,
runtime), LoggerSpec (url, mode all|request|response), Batcher (maxBatchSize, maxLatency,
timeout as integers), PodSpec containers. Unknown keys are rejected where KServe's CRD
declares a closed set, so a typo (``maxLatencyMs``) fails the test.
"""

from __future__ import annotations

from typing import Any

import pytest

_INT = {"type": "integer"}
_CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string"}, "image": {"type": "string"},
        "command": {"type": "array", "items": {"type": "string"}},
        "args": {"type": "array", "items": {"type": "string"}},
        "env": {"type": "array", "items": {
            "type": "object", "required": ["name"],
            "properties": {"name": {"type": "string"}, "value": {"type": "string"}},
            "additionalProperties": False}},
        "ports": {"type": "array", "items": {
            "type": "object", "required": ["containerPort"],
            "properties": {"containerPort": _INT, "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                           "name": {"type": "string"}},
            "additionalProperties": False}},
        "resources": {"type": "object"},
    },
    "additionalProperties": False,
}
_EXTENSION = {
    "minReplicas": {"type": "integer", "minimum": 0},
    "maxReplicas": {"type": "integer", "minimum": 0},
    "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
    "containerConcurrency": _INT,
    "timeout": _INT,
    "logger": {
        "type": "object",
        "properties": {"url": {"type": "string"}, "mode": {"enum": ["all", "request", "response"]},
                       "metadataHeaders": {"type": "array", "items": {"type": "string"}}},
        "additionalProperties": False,
    },
    "batcher": {
        "type": "object",
        "properties": {"maxBatchSize": _INT, "maxLatency": _INT, "timeout": _INT},
        "additionalProperties": False,
    },
    "labels": {"type": "object"},
    "annotations": {"type": "object"},
    "containers": {"type": "array", "items": _CONTAINER, "minItems": 1},
    "serviceAccountName": {"type": "string"},
}
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {
            "type": "object", "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                         "maxLength": 63},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object", "required": ["predictor"],
            "properties": {
                "predictor": {
                    "type": "object",
                    "properties": {
                        **_EXTENSION,
                        "model": {
                            "type": "object", "required": ["modelFormat"],
                            "properties": {
                                "modelFormat": {
                                    "type": "object", "required": ["name"],
                                    "properties": {"name": {"type": "string"},
                                                   "version": {"type": "string"}},
                                    "additionalProperties": False},
                                "protocolVersion": {"enum": ["v1", "v2", "grpc-v2"]},
                                "storageUri": {"type": "string"},
                                "runtime": {"type": "string"},
                            },
                            "additionalProperties": False,
                        },
                    },
                    "additionalProperties": False,
                    "oneOf": [{"required": ["model"]}, {"required": ["containers"]}],
                },
                "transformer": {
                    "type": "object", "required": ["containers"],
                    "properties": dict(_EXTENSION),
                    "additionalProperties": False,
                },
            },
            "additionalProperties": False,
        },
    },
}


def validate_inference_service(manifest: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(manifest, SCHEMA)
