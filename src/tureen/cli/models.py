"""``tureen models``: register, list, describe, delete and pick the best model version."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from tureen.cli.output import console, json_option, print_json, repo_option, table
from tureen.errors import ConflictError, InvalidRequestError
from tureen.models.version import FRAMEWORKS, ModelVersion, TensorSig

if TYPE_CHECKING:
    from tureen.models import ModelRegistry


def _registry(repo: str) -> ModelRegistry:
    from tureen.models import ModelRegistry

    return ModelRegistry.for_repo(repo)


def _ref(ref: str) -> tuple[str, str | None]:
    from tureen.models import parse_model_ref

    return parse_model_ref(ref)


def _metrics(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise InvalidRequestError(
            f"--metrics is not valid JSON ({exc}); write e.g. '{{\"auc\": 0.91}}'."
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequestError("--metrics must be a JSON object, e.g. '{\"auc\": 0.91}'.")
    return data


def _outputs(values: tuple[str, ...]) -> list[TensorSig]:
    out = []
    for v in values:
        name, _, datatype = v.partition(":")
        if not name or not datatype:
            raise InvalidRequestError(f"--output {v!r}: write NAME:DATATYPE, e.g. score:FP32.")
        out.append(TensorSig(name, datatype.upper(), (-1,)))
    return out


def _row(mv: ModelVersion) -> list[Any]:
    metrics = ", ".join(f"{k}={v:g}" for k, v in mv.metrics.items())
    return [mv.name, mv.version, mv.framework, metrics, mv.feature_service or "",
            mv.created_at.strftime("%Y-%m-%d %H:%M:%S"), mv.description]


_COLUMNS = ["name", "version", "framework", "metrics", "feature service", "created", "description"]


def _describe(mv: ModelVersion) -> None:
    console.print(f"[bold]{mv.name}[/] version [bold]{mv.version}[/] ({mv.framework})")
    console.print(f"  uri:              {mv.uri}")
    console.print(f"  created:          {mv.created_at.isoformat()}")
    if mv.description:
        console.print(f"  description:      {mv.description}")
    console.print(f"  project:          {mv.project or '-'}")
    console.print(f"  feature service:  {mv.feature_service or '-'}")
    console.print(f"  registry version: {mv.registry_version if mv.registry_version else '-'}")
    console.print(f"  training set:     {mv.training_set or '-'}")
    if mv.pipeline_run:
        console.print(f"  pipeline run:     {mv.pipeline_run}")
    console.print(f"  files:            {', '.join(mv.files)}")
    if mv.metrics:
        table("metrics", ["metric", "value"], [[k, f"{v:g}"] for k, v in mv.metrics.items()])
    if mv.inputs or mv.outputs:
        rows = [["input", t.name, t.datatype, list(t.shape)] for t in mv.inputs]
        rows += [["output", t.name, t.datatype, list(t.shape)] for t in mv.outputs]
        table("signature", ["", "name", "datatype", "shape"], rows)


def _check_unused(repo: str, name: str, version: int | None) -> None:
    from tureen.deployments import Deployments

    users = [
        f"{d.name} ({name}:{v})" for d in Deployments.for_repo(repo).list() if d.model == name
        for v in d.versions if version is None or v == version
    ]
    if users:
        raise ConflictError(
            f"deployments serve this model: {', '.join(users)}. Update or delete them first, "
            "or pass --force."
        )


def register(cli: click.Group) -> None:
    @cli.group()
    def models() -> None:
        """The model registry: versioned models with metrics and lineage."""

    @models.command("register")
    @click.argument("name")
    @click.argument("path", type=click.Path(exists=True))
    @click.option("--framework", "-f", required=True,
                  help=f"One of: {', '.join(FRAMEWORKS)}.")
    @click.option("--metrics", help='JSON object of metrics, e.g. \'{"auc": 0.91}\'.')
    @click.option("--feature-service", help="Feature service the model was trained on.")
    @click.option("--training-set", type=click.Path(), help="Training set file or URL.")
    @click.option("--description", default="", help="Free text.")
    @click.option("--output", "outputs", multiple=True, help="Output NAME:DATATYPE (repeat).")
    @click.option("--method", type=click.Choice(["predict", "predict_proba", "predict_log_proba",
                                                 "decision_function"]),
                  help="scikit-learn: what the served model returns — predict (labels, the "
                  "default) or predict_proba (class probabilities), ...")
    @repo_option
    @json_option
    def register_(name: str, path: str, framework: str, metrics: str | None,
                  feature_service: str | None, training_set: str | None, description: str,
                  outputs: tuple[str, ...], method: str | None, repo: str,
                  as_json: bool) -> None:
        """Copy the model at PATH into the registry as the next version of NAME."""
        mv = _registry(repo).register(
            name, path, framework, metrics=_metrics(metrics), feature_service=feature_service,
            training_set=training_set, description=description, outputs=_outputs(outputs),
            method=method,
        )
        if as_json:
            print_json({**mv.to_dict(), "uri": mv.uri})
            return
        console.print(f"Registered [bold]{mv.name}[/] version [bold]{mv.version}[/] at {mv.uri}")

    @models.command("list")
    @click.argument("name", required=False)
    @repo_option
    @json_option
    def list_(name: str | None, repo: str, as_json: bool) -> None:
        """Every registered model version (of NAME if given)."""
        versions = _registry(repo).list(name)
        if as_json:
            print_json([{**mv.to_dict(), "uri": mv.uri} for mv in versions])
            return
        table("models", _COLUMNS, [_row(mv) for mv in versions])

    @models.command()
    @click.argument("ref")
    @repo_option
    @json_option
    def describe(ref: str, repo: str, as_json: bool) -> None:
        """Metadata of NAME[:VERSION] (latest version by default)."""
        name, version = _ref(ref)
        mv = _registry(repo).get(name, version)
        if as_json:
            print_json({**mv.to_dict(), "uri": mv.uri})
            return
        _describe(mv)

    @models.command()
    @click.argument("ref")
    @click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--force", is_flag=True, help="Delete even if a deployment serves it.")
    @repo_option
    @json_option
    def delete(ref: str, yes: bool, force: bool, repo: str, as_json: bool) -> None:
        """Delete NAME:VERSION, or every version of NAME."""
        name, version = _ref(ref)
        reg = _registry(repo)
        if not force:
            _check_unused(repo, name, reg.get(name, version).version if version else None)
        what = f"{name} version {version}" if version else f"every version of {name}"
        if not yes and not as_json:
            reg.get(name, version)  # fail before asking when it does not exist
            click.confirm(f"Delete {what}?", abort=True)
        deleted = reg.delete(name, version)
        if as_json:
            print_json({"name": name, "deleted": deleted})
            return
        console.print(f"Deleted {name} versions {deleted}")

    @models.command()
    @click.argument("name")
    @click.option("--metric", "-m", required=True, help="Metric to rank versions by.")
    @click.option("--direction", type=click.Choice(["max", "min"]),
                  help="max (default) or min (default for loss/error/rmse/... metrics).")
    @repo_option
    @json_option
    def best(name: str, metric: str, direction: str | None, repo: str, as_json: bool) -> None:
        """The version of NAME with the best METRIC."""
        mv = _registry(repo).best(name, metric, direction)
        if as_json:
            print_json({**mv.to_dict(), "uri": mv.uri})
            return
        console.print(f"{mv.name}:{mv.version}  {metric}={mv.metrics[metric]:g}")
