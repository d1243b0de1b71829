"""What an executor of a compiled pipeline runs, and what a local run needs for it.

- ``python``: a lightweight Python component (``@dsl.component``): the function's source is in
  the container command; Kubeflow installs ``packages_to_install`` with pip and runs
  ``kfp.dsl.executor_main``. Locally the function runs in the current environment, with no
  pip install: ``missing_packages`` lists what is not installed, before anything runs.
- ``command``: any other container (``@dsl.container_component``, a component YAML): its
  command runs here as a process, with ``python``/``python3`` meaning this interpreter.
- ``importer``: ``dsl.importer``: an artifact from a URI, no process.

``ignored_options`` names the per-task settings a local run cannot honour (image, CPU, memory,
accelerators, Kubernetes platform config), for the one warning the runner prints.
"""

from __future__ import annotations

import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.pipelines.spec import PipelineSpec

_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
#: packages a lightweight component always lists, satisfied by running here at all
_IMPLIED = {"kfp", "typing-extensions"}


@dataclass(frozen=True)
class Executor:
    kind: str  # python | command | importer
    raw: dict[str, Any]
    source: str = ""
    function: str = ""
    packages: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    image: str = ""


def _pip_requirements(script: str) -> list[str]:
    """Requirement strings of every ``pip install`` in a component's shell prelude."""
    out: list[str] = []
    for line in script.split("&&"):
        if "pip install" not in line:
            continue
        try:
            words = shlex.split(line.split("pip install", 1)[1])
        except ValueError:
            continue
        skip = False
        for w in words:
            if skip:
                skip = False
                continue
            if w in ("--index-url", "--extra-index-url", "--trusted-host", "-i", "-f",
                     "--find-links"):
                skip = True
                continue
            if w.startswith("-") or w.startswith('"$0"') or w == '"$0"':
                continue
            out.append(w)
    return out


def classify(label: str, raw: Mapping[str, Any]) -> Executor:
    if "importer" in raw:
        return Executor("importer", dict(raw))
    c = raw.get("container")
    if not isinstance(c, Mapping):
        raise InvalidRequestError(f"pipeline spec: executor {label!r} has no container.")
    command = [str(x) for x in c.get("command") or []]
    args = [str(x) for x in c.get("args") or []]
    env = {str(e.get("name")): str(e.get("value", "")) for e in c.get("env") or []
           if isinstance(e, Mapping) and e.get("name")}
    image = str(c.get("image", ""))
    if any("kfp.dsl.executor_main" in x for x in command) and "--function_to_execute" in args:
        function = args[args.index("--function_to_execute") + 1] \
            if args.index("--function_to_execute") + 1 < len(args) else ""
        source = next((x for x in reversed(command) if f"def {function}(" in x), "")
        if function and source:
            packages = tuple(r for x in command if "pip install" in x
                             for r in _pip_requirements(x))
            return Executor("python", dict(raw), source=source, function=function,
                            packages=packages, env=env, image=image)
    if not command and not args:
        raise InvalidRequestError(f"pipeline spec: executor {label!r} has an empty command.")
    return Executor("command", dict(raw), command=tuple(command + args), env=env, image=image)


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _satisfied(requirement: str) -> tuple[bool, str]:
    """(ok, name). Markers that do not apply here count as satisfied."""
    req, _, marker = requirement.partition(";")
    m = _REQ_RE.match(req)
    if m is None:
        return True, requirement  # a URL or a path: cannot check, let it be
    name, spec = m.group(1), m.group(3).strip()
    if marker.strip():
        try:
            from packaging.markers import Marker

            if not Marker(marker.strip()).evaluate():
                return True, name
        except Exception:
            pass
    have = _installed(name)
    if have is None:
        return False, name
    if spec:
        try:
            from packaging.specifiers import SpecifierSet

            return SpecifierSet(spec).contains(have, prereleases=True), name
        except Exception:
            return True, name
    return True, name


def missing_packages(spec: PipelineSpec) -> dict[str, list[str]]:
    """requirement -> executors that need it, for requirements not satisfied here."""
    out: dict[str, list[str]] = {}
    for label, raw in spec.executors.items():
        ex = classify(label, raw)
        for req in ex.packages:
            ok, name = _satisfied(req)
            if not ok and name.lower() not in _IMPLIED:
                out.setdefault(req, []).append(label.removeprefix("exec-"))
        if ex.kind == "command":
            exe = ex.command[0] if ex.command else ""
            if exe and "{{" not in exe and exe not in ("python", "python3") \
                    and shutil.which(exe) is None:
                raise InvalidRequestError(
                    f"task {label.removeprefix('exec-')} runs `{exe}` (image {ex.image or '?'}),"
                    f" which is not installed here; a local run uses this machine's programs."
                )
    return out


def ignored_options(spec: PipelineSpec) -> list[str]:
    """Human-readable settings a local run ignores, grouped per setting."""
    found: dict[str, set[str]] = {}

    def note(what: str, label: str) -> None:
        found.setdefault(what, set()).add(label.removeprefix("exec-"))

    for label, raw in spec.executors.items():
        c = raw.get("container")
        if not isinstance(c, Mapping):
            continue
        if c.get("image"):
            note(f"image {c['image']}", label)
        res = c.get("resources") or {}
        for key, what in (("resourceCpuLimit", "cpu limit"), ("cpuLimit", "cpu limit"),
                          ("resourceCpuRequest", "cpu request"), ("cpuRequest", "cpu request"),
                          ("resourceMemoryLimit", "memory limit"),
                          ("memoryLimit", "memory limit"),
                          ("resourceMemoryRequest", "memory request"),
                          ("memoryRequest", "memory request")):
            if res.get(key) and not (key in ("cpuLimit", "memoryLimit", "cpuRequest",
                                             "memoryRequest")
                                     and res.get("resource" + key[0].upper() + key[1:])):
                note(f"{what} {res[key]}", label)
        acc = res.get("accelerator") or {}
        if acc:
            kind = acc.get("resourceType") or acc.get("type") or "accelerator"
            count = acc.get("resourceCount") or acc.get("count") or 1
            note(f"accelerator {kind} x{count}", label)
    k8s = (spec.platform.get("platforms") or {}).get("kubernetes") or {}
    for label, cfg in ((k8s.get("deploymentSpec") or {}).get("executors") or {}).items():
        for key in sorted(cfg or {}):
            note(f"kubernetes {key}", label)
    out = []
    for what, labels in sorted(found.items()):
        names = sorted(labels)
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        out.append(f"{what} ({shown})")
    return out
