"""Triton's model configuration, derived from a served model — and overrides parsed back.

``model_config`` answers ``GET /v2/models/{name}/config`` and gRPC ``ModelConfig`` in the JSON
form of Triton's ``ModelConfig`` message, built from what tureen already knows: the model's
signature (``inputs``/``outputs``), its adaptive-batching settings, the version policy, the
threads serving it and whether it is decoupled (its ``predict`` yields several responses).

``parse_override`` reads the ``config`` parameter of a repository ``load`` (Triton's JSON
model config) into ``model-settings.json`` values. Every field is applied or rejected with
the reason — never accepted and ignored. Fields tureen reports but cannot change (platform,
backend, instance_group, model_transaction_policy) are accepted when they equal what
``model_config`` reports, so a config fetched, edited and sent back loads.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from tureen.errors import InvalidRequestError
from tureen.serving.inference import TensorSpec
from tureen.serving.versions import VersionPolicy

if TYPE_CHECKING:
    from tureen.serving.model import Model

#: OIP datatype -> Triton's DataType enum name (BYTES is TYPE_STRING)
TRITON_TYPES = {
    "BOOL": "TYPE_BOOL", "UINT8": "TYPE_UINT8", "UINT16": "TYPE_UINT16",
    "UINT32": "TYPE_UINT32", "UINT64": "TYPE_UINT64", "INT8": "TYPE_INT8",
    "INT16": "TYPE_INT16", "INT32": "TYPE_INT32", "INT64": "TYPE_INT64", "FP16": "TYPE_FP16",
    "FP32": "TYPE_FP32", "FP64": "TYPE_FP64", "BYTES": "TYPE_STRING",
}
_FROM_TRITON = {v: k for k, v in TRITON_TYPES.items()}
#: the enum's numbers, for configs written with integers
_TRITON_NUMBERS = {1: "BOOL", 2: "UINT8", 3: "UINT16", 4: "UINT32", 5: "UINT64", 6: "INT8",
                   7: "INT16", 8: "INT32", 9: "INT64", 10: "FP16", 11: "FP32", 12: "FP64",
                   13: "BYTES"}
#: model-settings.json keys a config carries as ``parameters`` ({"key": {"string_value": v}})
PARAMETER_SETTINGS: dict[str, Callable[[str], Any]] = {
    "inline_budget_ms": float, "method": str,
}


def is_decoupled(model: Model) -> bool:
    """A model whose ``predict`` yields several responses per request."""
    fn = type(model).predict
    return inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn)


def backend_of(model: Model) -> str:
    """Triton's backend name: the runtime family (``onnxruntime``, ``sklearn``, ``pytorch``…)
    or ``python`` for a ``model.py``."""
    return model.platform.split("_")[0] if model.platform else "python"


def _dims(spec: TensorSpec, batching: bool) -> list[int]:
    shape = list(spec.shape) or [-1]
    return shape[1:] if batching and len(shape) > 1 else shape


def _tensor(spec: TensorSpec, batching: bool) -> dict[str, Any]:
    return {"name": spec.name, "data_type": TRITON_TYPES.get(spec.datatype, "TYPE_INVALID"),
            "dims": _dims(spec, batching)}


def policy_config(policy: VersionPolicy) -> dict[str, Any]:
    if policy.kind == "all":
        return {"all": {}}
    if policy.kind == "specific":
        return {"specific": {"versions": [int(v) for v in policy.versions if v.isdigit()]}}
    return {"latest": {"num_versions": policy.latest}}


def model_config(model: Model, policy: VersionPolicy, threads: int) -> dict[str, Any]:
    """The model's configuration as Triton's ``ModelConfig`` JSON."""
    batching = model.max_batch_size > 0
    config: dict[str, Any] = {
        "name": model.name,
        "platform": model.platform,
        "backend": backend_of(model),
        "version_policy": policy_config(policy),
        "max_batch_size": max(0, model.max_batch_size),
        "input": [_tensor(s, batching) for s in model.inputs],
        "output": [_tensor(s, batching) for s in model.outputs],
        "instance_group": [{"name": model.name, "kind": "KIND_CPU", "count": threads}],
        "model_transaction_policy": {"decoupled": is_decoupled(model)},
    }
    if model.max_batch_size > 1:
        config["dynamic_batching"] = {
            "max_queue_delay_microseconds": round(model.max_latency_ms * 1000)}
    params = {"inline_budget_ms": str(model.inline_budget_ms)}
    method = getattr(model, "method", None)
    if isinstance(method, str):
        params["method"] = method
    config["parameters"] = {k: {"string_value": v} for k, v in params.items()}
    return config


# overrides


def _fail(name: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(f"failed to load model {name!r}: the config override {what}")


def _int(name: str, field: str, value: Any, low: int = 0) -> int:
    """Protobuf's JSON mapping accepts integers and integer strings ("16")."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _fail(name, f"field {field!r} must be an integer, not {value!r}.")
    try:
        n = int(value)
    except ValueError:
        raise _fail(name, f"field {field!r} must be an integer, not {value!r}.") from None
    if n < low:
        raise _fail(name, f"field {field!r} must be at least {low}, not {n}.")
    return n


def _datatype(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in _TRITON_NUMBERS:
        return _TRITON_NUMBERS[value]
    if isinstance(value, str) and value in _FROM_TRITON:
        return _FROM_TRITON[value]
    raise _fail(name, f"data_type {value!r} is not one of {', '.join(_FROM_TRITON)}.")


_TENSOR_DEFAULTS = {"format": ("FORMAT_NONE", 0), "is_shape_tensor": (False,),
                    "allow_ragged_batch": (False,), "optional": (False,), "label_filename": ("",)}


def _tensors(name: str, field: str, value: Any, batching: bool) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise _fail(name, f"field {field!r} must be a list of tensors.")
    out = []
    for i, t in enumerate(value):
        if not isinstance(t, dict) or not isinstance(t.get("name"), str) or not t["name"]:
            raise _fail(name, f"{field}[{i}] needs a 'name'.")
        for k, v in t.items():
            if k in ("name", "data_type", "dims"):
                continue
            if k not in _TENSOR_DEFAULTS or v not in _TENSOR_DEFAULTS[k]:
                raise _fail(name, f"{field}[{i}].{k} = {v!r} is not supported by tureen; "
                            "remove it.")
        dims = t.get("dims", [])
        if not isinstance(dims, list):
            raise _fail(name, f"{field}[{i}].dims must be a list of integers.")
        shape = [_int(name, f"{field}[{i}].dims", d, -1) for d in dims]
        out.append({"name": t["name"], "datatype": _datatype(name, t.get("data_type")),
                    "shape": [-1, *shape] if batching else shape})
    return out


def _policy(name: str, value: Any) -> str:
    if not isinstance(value, dict) or len(value) != 1:
        raise _fail(name, "field 'version_policy' must hold one of latest, all or specific.")
    (kind, body), = value.items()
    body = body or {}
    if kind == "all" and isinstance(body, dict) and not body:
        return "all"
    if kind == "latest" and isinstance(body, dict) and set(body) <= {"num_versions"}:
        return f"latest:{_int(name, 'num_versions', body.get('num_versions', 1), 1)}"
    if kind == "specific" and isinstance(body, dict) and set(body) <= {"versions"}:
        versions = body.get("versions", [])
        if isinstance(versions, list) and versions:
            return "specific:" + ",".join(
                str(_int(name, "versions", v, 0)) for v in versions)
    raise _fail(name, f"version_policy {value!r} is not understood; use "
                '{"latest": {"num_versions": N}}, {"all": {}} or '
                '{"specific": {"versions": [1, 3]}}.')


def parse_override(name: str, text: str, current: dict[str, Any]) -> dict[str, Any]:
    """The ``config`` load parameter as model-settings values. ``current`` is
    ``model_config`` of the model as served (or ``{}``): unchangeable fields must match it."""
    try:
        cfg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise _fail(name, f"is not valid JSON ({exc}); send the model configuration as a "
                    'JSON object, e.g. {"max_batch_size": 16}.') from None
    if not isinstance(cfg, dict):
        raise _fail(name, "must be a JSON object (Triton's ModelConfig as JSON).")
    settings: dict[str, Any] = {}
    batching = (_int(name, "max_batch_size", cfg["max_batch_size"])
                if "max_batch_size" in cfg else int(current.get("max_batch_size", 0))) > 0
    for key, value in cfg.items():
        if key == "name":
            if value not in ("", name):
                raise _fail(name, f"names model {value!r}; a config must keep the model's "
                            f"name {name!r}.")
        elif key == "max_batch_size":
            settings["max_batch_size"] = _int(name, key, value)
        elif key in ("input", "output"):
            settings[key + "s"] = _tensors(name, key, value, batching)
        elif key == "dynamic_batching":
            if not isinstance(value, dict) or set(value) - {"max_queue_delay_microseconds"}:
                raise _fail(name, "field 'dynamic_batching' supports only "
                            "max_queue_delay_microseconds in tureen.")
            if "max_queue_delay_microseconds" in value:
                us = _int(name, "max_queue_delay_microseconds",
                          value["max_queue_delay_microseconds"])
                settings["max_latency_ms"] = us / 1000.0
        elif key == "version_policy":
            settings["version_policy"] = _policy(name, value)
        elif key == "parameters":
            settings.update(_parameters(name, value))
        elif key in ("platform", "backend", "instance_group", "model_transaction_policy"):
            if key in current and value != current[key]:
                raise _fail(name, f"sets {key} to {value!r}, but tureen decides it from the "
                            f"model files ({current[key]!r}); remove the field.")
        else:
            raise _fail(name, f"field {key!r} is not supported by tureen; the supported fields "
                        "are name, max_batch_size, input, output, dynamic_batching, "
                        "version_policy and parameters.")
    return settings


def _parameters(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(name, "field 'parameters' must be an object.")
    out: dict[str, Any] = {}
    for k, v in value.items():
        conv = PARAMETER_SETTINGS.get(k)
        text = v.get("string_value") if isinstance(v, dict) else None
        if conv is None or not isinstance(text, str):
            raise _fail(name, f"parameter {k!r} is not supported; tureen reads "
                        f"{', '.join(PARAMETER_SETTINGS)} as {{\"string_value\": ...}}.")
        try:
            out[k] = conv(text)
        except ValueError:
            raise _fail(name, f"parameter {k!r} = {text!r} is not a valid value.") from None
    return out


def check_unload_parameters(name: str, params: dict[str, Any]) -> None:
    """An unload takes ``unload_dependents`` (a boolean; tureen models have no dependents)."""
    unknown = sorted(set(params) - {"unload_dependents"})
    if unknown or not isinstance(params.get("unload_dependents", False), bool):
        raise InvalidRequestError(
            f"failed to unload model {name!r}: parameters {unknown or ['unload_dependents']} "
            "are not understood; an unload takes 'unload_dependents' (true or false).")
