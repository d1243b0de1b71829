"""Deploy gate: deploy a registered model version only if it is good enough.

A candidate passes when its ``metric`` meets ``threshold`` *and* beats the champion — the
version the target deployment serves now — by at least ``min_improvement`` (``direction``
``max`` for scores like AUC, ``min`` for losses). Then the deployment is updated, directly
or as a canary taking ``canary_percent`` of the traffic; otherwise nothing changes and the
decision says why. Every decision is returned (and recorded by the component).

Targets: ``local`` drives tureen deployments (the registry's deployment specs, served by
``tureen serve``) through the ``Deployments`` service; ``kserve`` also applies the
InferenceService ``deploy export`` writes through the Kubernetes API and waits for its
``status.url``, taking the champion from what the cluster serves. ``auto`` is ``kserve``
inside a Kubernetes pod and ``local`` elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tureen.deployments import Deployments, DeploymentSpec
from tureen.errors import InvalidRequestError, NotFoundError
from tureen.models import ModelVersion
from tureen.pipelines.steps.register import registry

TARGETS = ("auto", "local", "kserve")


@dataclass
class Decision:
    deployed: bool
    action: str  # created | updated | canary | none
    reason: str
    metric: str
    candidate: float
    champion: str | None = None
    champion_value: float | None = None
    url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self, ref: str, deployment: str) -> str:
        champ = f"{self.champion} ({self.champion_value:g})" if self.champion and \
            self.champion_value is not None else (self.champion or "none")
        rows = [("candidate", f"{ref} ({self.metric} {self.candidate:g})"),
                ("champion", champ), ("deployment", deployment),
                ("decision", self.action if self.deployed else "not deployed"),
                ("why", self.reason)] + ([("url", self.url)] if self.url else [])
        return "\n".join(["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]) + "\n"


def compare(candidate: float, threshold: float, direction: str, champion: float | None,
            min_improvement: float, metric: str, champion_ref: str | None) -> str | None:
    """None if the candidate passes, else the reason it does not."""
    if direction not in ("max", "min"):
        raise InvalidRequestError(f"direction {direction!r}: use 'max' or 'min'.")

    def better(a: float, b: float) -> bool:
        return a >= b if direction == "max" else a <= b

    if not better(candidate, threshold):
        word = "below" if direction == "max" else "above"
        return f"{metric} {candidate:g} is {word} the threshold {threshold:g}"
    if champion is not None:
        need = champion + min_improvement if direction == "max" else champion - min_improvement
        if not better(candidate, need) or candidate == champion:
            return (f"{metric} {candidate:g} does not beat the champion {champion_ref} "
                    f"({champion:g}" + (f" + {min_improvement:g}" if min_improvement else "")
                    + ")")
    return None


def _metric(metrics: Mapping[str, Any], metric: str) -> float:
    value = metrics.get(metric)
    if not isinstance(value, int | float) or isinstance(value, bool):
        have = sorted(k for k, v in metrics.items() if isinstance(v, int | float))
        raise InvalidRequestError(
            f"the gate metric {metric!r} is not among the evaluation's metrics "
            f"({', '.join(have) or 'none'}); set metric= to one of them.")
    return float(value)


def served(deployment: str, repo: str = "", config: str = "",
           env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What ``deployment`` serves now (the gate's cache key includes it)."""
    models = registry(repo, config, env)
    assert models.features is not None
    try:
        spec = Deployments(models.features, models).get(deployment)
    except NotFoundError:
        return {"deployment": deployment, "served": None}
    return {"deployment": deployment, "served": f"{spec.model}:{spec.version}",
            "canary": None if spec.canary is None else
            f"{spec.canary.version}@{spec.canary.percent:g}%"}


def gate(*, deployment: str, model_name: str, version: int, metrics: Mapping[str, Any],
         metric: str = "auc", threshold: float = 0.0, direction: str = "max",
         min_improvement: float = 0.0, canary_percent: float = 0.0, target: str = "auto",
         namespace: str = "", image: str = "tureen:latest", storage_uri: str = "",
         timeout_s: float = 600.0, repo: str = "", config: str = "") -> Decision:
    if target not in TARGETS:
        raise InvalidRequestError(f"target {target!r}: use one of {TARGETS}.")
    if not 0 <= canary_percent < 100:
        raise InvalidRequestError(f"canary_percent {canary_percent} must be in [0, 100): 0 "
                                  "moves all traffic, otherwise the canary's share.")
    if target == "auto":
        target = "kserve" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"
    value = _metric(metrics, metric)
    models = registry(repo, config)
    assert models.features is not None
    deps = Deployments(models.features, models)
    candidate = models.get(model_name, version)
    try:
        spec: DeploymentSpec | None = deps.get(deployment)
    except NotFoundError:
        spec = None
    served: tuple[str, int] | None = (spec.model, spec.version) if spec else None
    if target == "kserve":
        from tureen.pipelines.steps import kserve

        served = kserve.live_version(namespace or "default", deployment) or served
    champion: ModelVersion | None = None
    champion_value = None
    if served is not None:
        if served[0] != model_name:
            return Decision(False, "none", f"deployment {deployment!r} serves model "
                            f"{served[0]!r}, not {model_name!r}", metric, value,
                            f"{served[0]}:{served[1]}")
        if served[1] == version or (spec and spec.canary and spec.canary.version == version):
            return Decision(False, "none", f"{candidate.ref} is already deployed on "
                            f"{deployment!r}", metric, value, f"{model_name}:{served[1]}")
        champion = models.get(model_name, served[1])
        champion_value = champion.metrics.get(metric)
    why = compare(value, threshold, direction, champion_value, min_improvement, metric,
                  champion.ref if champion else None)
    champ_ref = champion.ref if champion else None
    if why is not None:
        return Decision(False, "none", why, metric, value, champ_ref, champion_value)
    note = "" if champion is None or champion_value is not None else \
        f" (champion {champion.ref} has no {metric}; compared with the threshold only)"
    if spec is None:
        spec = deps.create(deployment, model_name, version,
                           feature_service=candidate.feature_service)
        action, reason = "created", (f"no deployment {deployment!r} yet: created it serving "
                                     f"{candidate.ref}")
    elif canary_percent > 0 and champion is not None:
        spec = deps.update(deployment, canary_version=version, canary_percent=canary_percent)
        action, reason = "canary", (f"{metric} {value:g} passes: {candidate.ref} takes "
                                    f"{canary_percent:g}% of {deployment!r} as a canary")
    else:
        spec = deps.update(deployment, version=version)
        action, reason = "updated", f"{metric} {value:g} passes: {deployment!r} now serves " \
                                    f"{candidate.ref}"
    decision = Decision(True, action, reason + note, metric, value, champ_ref, champion_value)
    if target == "kserve":
        decision.url = _apply_kserve(models, spec, namespace, image, storage_uri, timeout_s)
    return decision


def _apply_kserve(models: Any, spec: DeploymentSpec, namespace: str, image: str,
                  storage_uri: str, timeout_s: float) -> str:
    from tureen.deployments.export import inference_service
    from tureen.pipelines.steps import kserve

    main = models.get(spec.model, spec.version)
    canary = models.get(spec.model, spec.canary.version) if spec.canary else None
    manifest, warnings = inference_service(spec, main, canary, image=image,
                                           storage_uri=storage_uri or None,
                                           namespace=namespace or "default")
    blocking = [w for w in warnings if "local path" in w]
    if blocking:
        raise InvalidRequestError(blocking[0])
    return kserve.apply(manifest, timeout_s=timeout_s)
