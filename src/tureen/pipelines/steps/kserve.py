"""Apply a KServe ``InferenceService`` through the Kubernetes API and wait until it serves.

Create it, or replace it at its current ``resourceVersion``, then poll until
``status.url`` is set and the ``Ready`` condition is true for this generation (the success
condition of KFP v1's ``ResourceOp`` on ``status.url``). Credentials come from the pod's
service account in a cluster, else from ``KUBECONFIG``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tureen.errors import BackendUnavailableError, InvalidRequestError

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


def _api() -> Any:
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        raise InvalidRequestError("deploying to KServe needs the kubernetes client: "
                                  "pip install 'tureen[pipelines]'.") from None
    try:
        config.load_incluster_config()
    except ConfigException:
        try:  # KUBECONFIG as set now (the client reads it once, when first imported)
            config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        except (ConfigException, FileNotFoundError) as exc:
            raise BackendUnavailableError(f"no Kubernetes credentials: not in a pod and no "
                                          f"usable KUBECONFIG ({exc}).") from None
    return client.CustomObjectsApi()


def live_version(namespace: str, name: str) -> tuple[str, int] | None:
    """(model, version) the InferenceService serves now, from tureen's labels; None if absent."""
    from kubernetes.client.exceptions import ApiException

    try:
        obj = _api().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise BackendUnavailableError(f"reading InferenceService {namespace}/{name}: "
                                      f"{exc.status} {exc.reason}") from None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    model, version = labels.get("tureen.dev/model"), labels.get("tureen.dev/model-version")
    if not model or not str(version or "").isdigit():
        return None
    return str(model), int(str(version))


def _ready(obj: dict[str, Any]) -> tuple[bool, str]:
    status = obj.get("status") or {}
    gen = (obj.get("metadata") or {}).get("generation")
    conds = status.get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    fresh = gen is None or status.get("observedGeneration") in (None, gen)
    ok = bool(status.get("url")) and fresh and ready is not None and ready.get("status") == "True"
    summary = "; ".join(f"{c.get('type')}={c.get('status')}"
                        + (f" ({c.get('message')})" if c.get("message") else "") for c in conds)
    return ok, summary or "no status yet"


def apply(manifest: dict[str, Any], *, timeout_s: float = 600.0, poll_s: float = 2.0) -> str:
    """Create or replace the InferenceService; returns its ``status.url`` once ready."""
    from kubernetes.client.exceptions import ApiException

    api = _api()
    meta = manifest["metadata"]
    ns, name = meta.get("namespace") or "default", meta["name"]
    try:
        current = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise BackendUnavailableError(f"reading InferenceService {ns}/{name}: "
                                          f"{exc.status} {exc.reason}") from None
        current = None
    try:
        if current is None:
            api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest)
        else:
            body = {**manifest, "metadata": {**meta, "resourceVersion":
                                             current["metadata"]["resourceVersion"]}}
            api.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, body)
    except ApiException as exc:
        raise BackendUnavailableError(f"applying InferenceService {ns}/{name}: {exc.status} "
                                      f"{exc.reason}: {str(exc.body)[:300]}") from None
    deadline = time.monotonic() + timeout_s
    summary = "no status yet"
    while time.monotonic() < deadline:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        ok, summary = _ready(obj)
        if ok:
            return str(obj["status"]["url"])
        time.sleep(poll_s)
    raise BackendUnavailableError(f"InferenceService {ns}/{name} was not ready within "
                                  f"{timeout_s:.0f} s: {summary}")
