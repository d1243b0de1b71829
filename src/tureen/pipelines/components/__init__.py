"""tureen's ready KFP components (``pip install 'tureen[pipelines]'``).

Each is a lightweight KFP v2 component usable alone in any pipeline::

    from kfp import dsl
    from tureen.pipelines.components import training_set, train, evaluate, register, deploy_gate

- ``training_set``: repo + feature service (or ``features``) + entity rows → Parquet
  ``Dataset``, pinned to a data snapshot recorded in the artifact's metadata;
- ``train``: a scikit-learn / XGBoost / LightGBM estimator from a spec, or your function;
- ``evaluate``: ``Metrics`` and ``ClassificationMetrics`` (confusion matrix, ROC curve) on the
  held-out rows, as Kubeflow's UI shows them;
- ``register``: into tureen's model registry with metrics and lineage (feature service,
  training set and snapshot, pipeline run);
- ``deploy_gate``: threshold and champion check, then update (directly or as a canary) a
  tureen deployment locally or a KServe InferenceService on Kubeflow — or say why not.

Every component takes ``repo`` (default: ``$TUREEN_REPO``, else the working directory) and
``config`` (YAML of ``tureen.yaml`` keys overriding the repo's file, e.g. the SQL registry of a
cluster). They run in the image ``tureen:latest``; ``tureen pipeline compile --image`` sets
the real one. The work is done by ``tureen.pipelines.steps``, imported inside each function
so the compiled component is self-contained.
"""

# No ``from __future__ import annotations`` here: kfp reads the annotations when the
# components are declared, and the compiled source must name its return types inline.
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from tureen.pipelines.compile import TUREEN_IMAGE

__all__ = ["TUREEN_IMAGE", "deploy_gate", "evaluate", "register", "train", "training_set"]


@dsl.component(base_image=TUREEN_IMAGE)
def training_set(
    dataset: Output[Dataset],
    entities: str,
    feature_service: str = "",
    features: list = [],  # noqa: B006 - a KFP default, never mutated
    pin_registry_version: int = 0,
    repo: str = "",
    config: str = "",
    timestamp_column: str = "",
) -> NamedTuple(  # type: ignore[valid-type]
        "TrainingSetInfo", [("rows", int), ("registry_version", int)]):
    """Point-in-time training set of `feature_service` (or `features`) for the entity rows in
    `entities` (Parquet/CSV, relative to the repo; their time column `timestamp_column`,
    default event_timestamp), pinned to a data snapshot."""
    from tureen.pipelines.steps.training_set import build

    meta = build(dataset.path, repo=repo, config=config, feature_service=feature_service,
                 features=list(features) or None, entities=entities,
                 pin_registry_version=pin_registry_version, timestamp_column=timestamp_column)
    dataset.metadata.update(meta)
    return (int(meta["rows"]), int(meta["tureen.registry_version"]))


@dsl.component(base_image=TUREEN_IMAGE)
def train(
    training_set: Input[Dataset],
    model: Output[Model],
    test_set: Output[Dataset],
    label: str,
    estimator: str = "gradient_boosting",
    params: dict = {},  # noqa: B006 - a KFP default, never mutated
    learning_rate: float = 0.0,
    function: str = "",
    features: list = [],  # noqa: B006 - a KFP default, never mutated
    test_size: float = 0.2,
    split: str = "time",
    timestamp_column: str = "event_timestamp",
    seed: int = 0,
    repo: str = "",
) -> NamedTuple("TrainInfo", [("framework", str), ("train_rows", int)]):  # type: ignore[valid-type]
    """Fit `estimator` (shorthand or import path; `params` to its constructor, `learning_rate`
    added when > 0) or your `function` ("file.py:fit" / "module:fit") on the training set,
    holding out `test_size` of the rows (by time, or at random)."""
    from tureen.pipelines.steps.train import train as fit

    args = {k: int(v) if isinstance(v, float) and v.is_integer() and k != "learning_rate"
            else v for k, v in dict(params).items()}
    if learning_rate > 0:
        args["learning_rate"] = learning_rate
    meta = fit(training_set.path, model.path, test_set.path, label=label,
               features=list(features) or training_set.metadata.get("tureen.features"),
               estimator=estimator, params=args, function=function, test_size=test_size,
               how=split, timestamp_column=timestamp_column, seed=seed, repo=repo)
    model.metadata.update(meta)
    test_set.metadata.update({"rows": meta["test_rows"], "label": label, "format": "parquet"})
    return (meta["framework"], int(meta["train_rows"]))


@dsl.component(base_image=TUREEN_IMAGE)
def evaluate(
    model: Input[Model],
    test_set: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    threshold: float = 0.5,
) -> float:
    """Score the model on the held-out rows through tureen's serving runtime; log scalar
    metrics, the confusion matrix and the ROC curve. Returns AUC (or -1 if there is none)."""
    from tureen.pipelines.steps.evaluate import evaluate as score

    ev = score(model.path, test_set.path, label=model.metadata["label"],
               features=model.metadata["features"],
               task=model.metadata.get("task", "classification"), threshold=threshold)
    for name, value in ev.metrics.items():
        metrics.log_metric(name, value)
    if ev.confusion:
        classification.log_confusion_matrix(ev.labels, ev.confusion)
    if ev.fpr:
        classification.log_roc_curve(ev.fpr, ev.tpr, ev.thresholds)
    return float(ev.metrics.get("auc", -1.0))


@dsl.component(base_image=TUREEN_IMAGE)
def register(
    model: Input[Model],
    metrics: Input[Metrics],
    training_set: Input[Dataset],
    registered: Output[Model],
    model_name: str,
    feature_service: str = "",
    description: str = "",
    pipeline_run: str = "",
    repo: str = "",
    config: str = "",
) -> NamedTuple("RegisteredModel", [("name", str), ("version", int)]):  # type: ignore[valid-type]
    """Register the model as the next version of `model_name`, with its metrics and lineage
    (feature service, training set and its snapshot, the pipeline run: pass
    `pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER`; a local run fills it in by itself)."""
    import json
    import os

    from tureen.pipelines.steps.register import register as add

    mv = add(model.path, model_name=model_name, framework=model.metadata["framework"],
             metrics=metrics.metadata, training_set_uri=training_set.uri,
             training_set_metadata=training_set.metadata, feature_service=feature_service,
             pipeline_run=pipeline_run or os.environ.get("TUREEN_PIPELINE_RUN_ID", ""),
             description=description, repo=repo, config=config)
    registered.metadata.update({"tureen.model": mv.name, "tureen.version": mv.version,
                                "tureen.uri": mv.uri, "framework": mv.framework})
    with open(registered.path, "w") as f:
        json.dump({"name": mv.name, "version": mv.version, "uri": mv.uri}, f)
    return (mv.name, mv.version)


@dsl.component(base_image=TUREEN_IMAGE)
def deploy_gate(
    metrics: Input[Metrics],
    decision: Output[Markdown],
    deployment: str,
    model_name: str,
    version: int,
    metric: str = "auc",
    threshold: float = 0.0,
    direction: str = "max",
    min_improvement: float = 0.0,
    canary_percent: float = 0.0,
    target: str = "auto",
    namespace: str = "",
    image: str = "tureen:latest",
    storage_uri: str = "",
    timeout_s: int = 600,
    repo: str = "",
    config: str = "",
) -> NamedTuple(  # type: ignore[valid-type]
        "GateDecision", [("deployed", bool), ("action", str), ("reason", str)]):
    """Deploy `model_name:version` on `deployment` if `metric` meets `threshold` and beats the
    version served now — directly, or as a canary at `canary_percent` — else record why not.
    `target`: local (tureen deployments), kserve (InferenceService via the Kubernetes API) or
    auto (kserve inside a pod)."""
    from tureen.pipelines.steps.gate import gate

    d = gate(deployment=deployment, model_name=model_name, version=version,
             metrics=metrics.metadata, metric=metric, threshold=threshold, direction=direction,
             min_improvement=min_improvement, canary_percent=canary_percent, target=target,
             namespace=namespace, image=image, storage_uri=storage_uri, timeout_s=timeout_s,
             repo=repo, config=config)
    print(f"deploy gate: {'DEPLOYED' if d.deployed else 'NOT DEPLOYED'} ({d.action}): {d.reason}")
    decision.metadata.update(d.to_dict())
    with open(decision.path, "w") as f:
        f.write(d.markdown(f"{model_name}:{version}", deployment))
    return (d.deployed, d.action, d.reason)
