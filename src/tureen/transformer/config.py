"""``TransformerConfig``: everything a feature transformer needs, validated by pydantic.

A transformer is configured, not hand-written. Example (YAML, as in ``tureen.yaml``'s
``serving.transformers`` list or a file passed to ``tureen serve-transformer --config``)::

    name: fraud                       # served as /v1/models/fraud, /v2/models/fraud
    feature_service: fraud_detection_v2
    entity_keys: {account_id: account_id}   # join key -> request field / input / column
    features: {source: local}         # or {source: remote, url: http://feature-server:6566}
    predictor: {model: fraud-model}   # in-process model, or
    # predictor: {host: fraud-predictor:8080, protocol: v2, model: fraud-model}
    missing: {policy: reject}         # or default (with defaults: {...}) or null
    timeout_seconds: 2.0
    retries: 2
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tureen.errors import ConfigError

Protocol = Literal["v1", "v2", "grpc-v2"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClientTLSConfig(_Strict):
    ca_file: str | None = Field(
        default=None, description="CA bundle that signed the server's certificate (default: "
        "the system CAs).")
    cert: str | None = Field(default=None,
                             description="Client certificate (PEM) when the server wants mTLS.")
    key: str | None = Field(default=None, description="Key of the client certificate.")

    @model_validator(mode="after")
    def _pair(self) -> ClientTLSConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: give both cert and key for a client certificate, or neither")
        return self


class FeatureSourceConfig(_Strict):
    source: Literal["local", "remote"] = Field(
        default="local",
        description="local: read the repo's online store in process; remote: call a "
        "Feast-compatible feature server (tureen or Feast) at `url`.")
    url: str | None = Field(default=None,
    description="Base URL of the feature server (remote only).")
    repo: str | None = Field(
        default=None, description="Feature repo whose registry gives datatypes and feature order. "
        "Defaults to the serving repo; for a remote tureen feature server it may be omitted "
        "(the schema is read from GET /v2/models/<service> there).")
    tls: ClientTLSConfig | None = Field(
        default=None, description="TLS settings for an https:// feature server.")

    @model_validator(mode="after")
    def _url_for_remote(self) -> FeatureSourceConfig:
        if self.source == "remote" and not self.url:
            raise ValueError("features.source 'remote' needs features.url")
        return self


class PredictorConfig(_Strict):
    model: str | None = Field(
        default=None,
        description="Name of the model to call. In process: a model served by the same "
        "server (or loaded from `model_dir`). Remote: the name on the predictor (defaults to "
        "the transformer's name).")
    model_dir: str | None = Field(
        default=None, description="Load the in-process predictor from this directory (a model "
        "version directory, e.g. models/fraud/1).")
    host: str | None = Field(default=None, description="Remote predictor host:port or URL.")
    protocol: Protocol = Field(default="v1", description="What the remote predictor speaks.")
    tls: ClientTLSConfig | None = Field(
        default=None, description="TLS to the remote predictor: used for https:// hosts and, "
        "when set, for grpc-v2 (gRPC over TLS).")
    binary_tensors: bool = Field(
        default=False,
        description="v2 only: send tensors with the OIP binary extension (faster for large "
        "batches; the predictor must support it, as tureen, KServe and Triton do).")
    input_name: str | None = Field(
        default=None,
        description="OIP input name to send (default: the predictor's declared input, "
        "else 'input-0').")
    input_datatype: str | None = Field(
        default=None, description="OIP datatype of the feature tensor (default: the predictor's "
        "declared input datatype, else the widest feature dtype in the registry).")

    @model_validator(mode="after")
    def _one_target(self) -> PredictorConfig:
        if self.host and self.model_dir:
            raise ValueError("predictor: pass host (remote) or model_dir (in process), not both")
        return self


class MissingPolicy(_Strict):
    policy: Literal["reject", "default", "null"] = Field(
        default="reject",
        description="reject: 404 naming the entity when it has no stored features, "
        "400 naming the feature when one is null; default: fill `defaults`; null: pass NaN "
        "(v2/gRPC) or null (v1).")
    defaults: dict[str, Any] = Field(
        default_factory=dict, description="Feature name -> value used by the default policy.")

    @field_validator("policy", mode="before")
    @classmethod
    def _yaml_null(cls, v: Any) -> Any:
        # `policy: null` in YAML is None, not the string: it means the null policy
        return "null" if v is None else v


class ScriptConfig(_Strict):
    path: str = Field(description="Python file with a class that has preprocess(inputs) and/or "
                      "postprocess(outputs).")
    position: Literal["before_features", "after_features"] = Field(
        default="before_features",
        description="before_features: preprocess sees the request rows and "
        "may compute entity keys; after_features: preprocess sees the feature rows just before "
        "the model. postprocess always sees the model's predictions.")


class TransformerConfig(_Strict):
    name: str = Field(description="Name the transformer is served under.")
    feature_service: str = Field(description="FeatureService whose features the model takes.")
    entity_keys: dict[str, str] = Field(
        default_factory=dict, description="Join key -> where it is in the request: a field of "
        "v1 instances, a named OIP input, or a column of a content_type=pd request. Unlisted "
        "join keys are looked up under their own name.")
    features: FeatureSourceConfig = Field(default_factory=FeatureSourceConfig)
    predictor: PredictorConfig = Field(default_factory=PredictorConfig)
    input_format: Literal["tensor", "columns"] = Field(
        default="tensor",
        description="tensor: one [N, F] tensor in feature order (what scikit-learn, "
        "XGBoost and most models take); columns: one tensor per feature with its registry "
        "datatype (content_type pd) or v1 instances as objects.")
    include_request_fields: bool = Field(
        default=False,
        description="Also pass the request-time fields (e.g. amount) to the model, after "
        "the features.")
    missing: MissingPolicy = Field(default_factory=MissingPolicy)
    script: ScriptConfig | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-attempt predictor/feature "
                                   "server timeout.")
    retries: int = Field(default=2, ge=0,
        description="Retries after a connection error, timeout or "
                         "502/503/504, with exponential backoff.")
    backoff_seconds: float = Field(default=0.05, ge=0, description="First retry delay; doubles.")
    inline_budget_ms: float = Field(
        default=1.0, ge=0,
        description="Fused mode: run the feature lookup and model inline on the event loop "
        "while their recent average stays under this many ms (a thread hop costs more than "
        "that); slower calls go to a worker thread. 0: always a worker thread.")
    max_batch_rows: int = Field(
        default=256, ge=1,
        description="Requests arriving together share one model call, up to this many rows "
        "(1: never merge): fused mode also shares the feature read; split mode merges the "
        "predictor calls of requests that queue while one is in flight. Scripts disable it.")
    max_connections: int = Field(default=100, ge=1, description="Connection pool size per remote.")


def load_transformer_config(data: dict[str, Any] | str | Path) -> TransformerConfig:
    """Validate a mapping or a YAML file; errors name the field."""
    where = "transformer config"
    if isinstance(data, str | Path):
        where = str(data)
        try:
            data = yaml.safe_load(Path(data).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{where}: cannot read it ({exc}).") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with name and feature_service.")
    try:
        return TransformerConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"field `{'.'.join(str(p) for p in e['loc']) or '(top)'}`: {e['msg']}"
                    for e in exc.errors()]
        raise ConfigError(f"{where} is invalid:\n  " + "\n  ".join(problems)) from None
