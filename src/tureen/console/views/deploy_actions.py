"""Deployment actions as plain form posts, handed to the ``Deployments`` service the CLI
uses: create (simple and advanced form), start, stop, update version, canary, promote,
rollback, delete, and the KServe manifest export.

A failed action changes nothing (the service validates before its one atomic write) and
re-renders the form with the service's own error next to the field it is about.
"""

from __future__ import annotations

import re
from typing import Any

from tureen.console.http import ConsoleRequest, Response, seg
from tureen.console.page import Page, Redirect, route
from tureen.console.services import ConsoleServices
from tureen.console.views.deployments import deployment_detail
from tureen.errors import InvalidRequestError, NotFoundError, TureenError
from tureen.models import parse_model_ref

# which form field a service error is about, by the words the CLI's messages use
_FIELD_PATTERNS = [
    ("name", re.compile(r"deployment name|already exists|deployment '.*' already")),
    ("model", re.compile(r"no model named|model name|model '.*' has no version|version \d+")),
    ("feature_service", re.compile(r"feature service")),
    ("transformer", re.compile(r"transformer")),
    ("workers", re.compile(r"--workers")),
    ("batching", re.compile(r"--batching|max_batch_size")),
    ("idle_unload", re.compile(r"--idle-unload")),
    ("logging", re.compile(r"log(ging)? mode|LogMode|logging")),
    ("log_sink", re.compile(r"sink")),
    ("canary_percent", re.compile(r"percent")),
    ("version", re.compile(r"version")),
]


def field_of(message: str, fields: list[str]) -> str:
    """The form field an error message is about ('' for the form as a whole)."""
    for name, pattern in _FIELD_PATTERNS:
        if name in fields and pattern.search(message):
            return name
    return ""


CREATE_FIELDS = ["name", "model", "feature_service", "transformer", "workers", "logging",
                 "log_sink", "batching", "idle_unload"]
ADVANCED = ["transformer", "workers", "log_sink", "batching", "idle_unload"]


def _form_page(req: ConsoleRequest, svc: ConsoleServices, values: dict[str, str],
               errors: dict[str, str], status: int = 200) -> Page:
    snap = svc.features.snapshot()
    data = {"form": values, "errors": errors, "models": svc.model_index.names(),
            "feature_services": sorted(snap.feature_services),
            "advanced": values.get("advanced") == "1" or any(
                k in errors or values.get(k, "") not in ("", "1") for k in ADVANCED),
            "log_modes": ["NONE", "ALL", "MODEL_INPUTS", "PREDICTIONS"]}
    return Page("deployment_new.html", data, "New deployment", status,
                crumbs=[("Deployments", "/deployments")])


def new_form(req: ConsoleRequest, svc: ConsoleServices) -> Page:
    values = {"name": "", "model": req.arg("model"), "feature_service": "", "transformer": "",
              "workers": "1", "logging": "NONE", "log_sink": "", "batching": "",
              "idle_unload": "", "advanced": req.arg("advanced")}
    return _form_page(req, svc, values, {})


def _number(text: str, field: str, kind: type) -> Any:
    if not text.strip():
        return None
    try:
        return kind(text)
    except ValueError:
        flag = {"workers": "--workers", "idle_unload": "--idle-unload",
                "canary_percent": "--canary-percent"}.get(field, field)
        raise InvalidRequestError(f"{flag} {text[:20]!r} is not a number.") from None


def create(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    f = {k: req.form.get(k, "").strip() for k in [*CREATE_FIELDS, "advanced"]}
    try:
        if not f["name"]:
            raise InvalidRequestError("deployment name is required.")
        if not f["model"]:
            raise InvalidRequestError("pick a model: no model named '' (write MODEL[:VERSION]).")
        model, version = parse_model_ref(f["model"])
        workers = _number(f["workers"], "workers", int)
        idle = _number(f["idle_unload"], "idle_unload", float)
        spec = svc.deployments.create(
            f["name"], model, version, feature_service=f["feature_service"] or None,
            transformer=f["transformer"] or None, workers=1 if workers is None else workers,
            logging=f["logging"] or "NONE", log_sink=f["log_sink"] or None,
            batching=f["batching"] or None, idle_unload_seconds=idle)
    except TureenError as exc:
        message = str(exc)
        return _form_page(req, svc, f, {field_of(message, CREATE_FIELDS): message}, 400)
    return Redirect(f"/deployments/{seg(spec.name)}?flash=created")


def _act(req: ConsoleRequest, svc: ConsoleServices, form: str, flash: str,
         run: Any) -> Page | Redirect:
    """Run one change; its error (with nothing changed) goes next to form ``form``."""
    name = req.params["name"]
    try:
        run(name)
    except NotFoundError as exc:
        if "deployment" in str(exc) and name in str(exc):
            raise
        return deployment_detail(req, svc, {form: str(exc)}, 400)
    except TureenError as exc:
        return deployment_detail(req, svc, {form: str(exc)}, 400)
    return Redirect(f"/deployments/{seg(name)}?flash={flash}")


def start(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    return _act(req, svc, "state", "started",
                lambda n: svc.deployments.set_state(n, "started"))


def stop(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    return _act(req, svc, "state", "stopped",
                lambda n: svc.deployments.set_state(n, "stopped"))


def update(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    version = req.form.get("version", "").strip()
    if not version:
        return deployment_detail(req, svc, {"version": "pick the version to serve."}, 400)
    return _act(req, svc, "version", "updated",
                lambda n: svc.deployments.update(n, version))


def canary(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    version = req.form.get("canary_version", "").strip() or None
    try:
        percent = _number(req.form.get("canary_percent", ""), "canary_percent", float)
    except InvalidRequestError as exc:
        return deployment_detail(req, svc, {"canary": str(exc)}, 400)
    if version is None and percent is None:
        return deployment_detail(
            req, svc, {"canary": "pick a canary version and/or a percent."}, 400)
    return _act(req, svc, "canary", "canary", lambda n: svc.deployments.update(
        n, canary_version=version, canary_percent=percent))


def promote(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    return _act(req, svc, "canary", "promoted",
                lambda n: svc.deployments.update(n, promote=True))


def clear_canary(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    return _act(req, svc, "canary", "cleared",
                lambda n: svc.deployments.update(n, clear_canary=True))


def rollback(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    return _act(req, svc, "version", "rolled-back",
                lambda n: svc.deployments.update(n, rollback=True))


def delete(req: ConsoleRequest, svc: ConsoleServices) -> Page | Redirect:
    name = req.params["name"]
    if req.form.get("confirm", "").strip() != name:
        return deployment_detail(req, svc, {"delete": f"type the deployment name {name!r} to "
                                            "confirm the delete."}, 400)
    svc.deployments.delete(name)
    return Redirect("/deployments?flash=deleted")


def kserve_manifest(req: ConsoleRequest, svc: ConsoleServices) -> Response:
    """The InferenceService manifest `tureen deploy export --target kserve` writes."""
    from tureen.deployments.export import inference_service, manifest_text

    spec = svc.deployments.get(req.params["name"])
    main = svc.models.get(spec.model, spec.version)
    canary = svc.models.get(spec.model, spec.canary.version) if spec.canary else None
    manifest, _ = inference_service(spec, main, canary,
                                    storage_uri=req.arg("storage_uri") or None,
                                    namespace=req.arg("namespace") or None)
    text = manifest_text(manifest).encode()
    headers = [("content-disposition",
                f'attachment; filename="{spec.name}-inferenceservice.yaml"')]
    return Response(200, text, "application/yaml; charset=utf-8", headers)


ROUTES = [
    route("GET", "/deployments/new", new_form),
    route("POST", "/deployments", create),
    route("POST", "/deployments/{name}/start", start),
    route("POST", "/deployments/{name}/stop", stop),
    route("POST", "/deployments/{name}/update", update),
    route("POST", "/deployments/{name}/canary", canary),
    route("POST", "/deployments/{name}/promote", promote),
    route("POST", "/deployments/{name}/clear-canary", clear_canary),
    route("POST", "/deployments/{name}/rollback", rollback),
    route("POST", "/deployments/{name}/delete", delete),
    route("GET", "/deployments/{name}/kserve.yaml", kserve_manifest),
]
