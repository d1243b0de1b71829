"""DESIGN.md's layer order, checked over the import graph of ``src/tureen`` (every import,
including those inside functions).

    types & definitions  <  codecs  <  core (services, storage, serving)  <  transports (REST,
    gRPC, the console)  <  CLI

A module may import its own layer or lower ones; the core never imports a web framework or
grpc (a remote-predictor client may, it is a backend); and no two modules import each other
at run time, directly or through others (imports under ``if TYPE_CHECKING:`` do not run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src"

#: (rank, name, module prefixes); modules matching no prefix are the core
LAYERS: list[tuple[int, str, tuple[str, ...]]] = [
    (0, "types", ("tureen.errors", "tureen.error_codes", "tureen.types", "tureen.definitions")),
    (1, "codecs", ("tureen.codecs", "tureen.serving.inference")),
    (3, "transports", ("tureen.transports", "tureen.console")),
    (4, "cli", ("tureen.cli", "tureen.__main__")),
]
CORE = (2, "core")
#: the only third-party imports the two lowest layers may make
LOW_LAYER_LIBS = {"numpy", "pandas", "pyarrow", "pydantic", "orjson", "google"}
WEB = {"starlette", "uvicorn", "fastapi", "grpc", "httptools"}
#: core modules that are clients of remote servers (backends), allowed a grpc / httptools client
#: function-local import cycles that landed after the layer check (a cycle whose modules all
#: fall under one entry's prefixes); each owner removes theirs (a shared base module both
#: sides import). Do not add to this list.
KNOWN_CYCLES = [
    ("tureen.definitions.feature_view", "tureen.definitions.stream"),  # stream
]
WEB_CLIENTS = {"tureen.serving.clients": {"grpc"}, "tureen.transformer.predictor": {"grpc"},
               "tureen.serving.http_pool": {"httptools"}}


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    runtime: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def imports(modules: set[str]) -> Iterator[Import]:
    for path in sorted(SRC.rglob("*.py")):
        source = module_name(path)
        tree = ast.parse(path.read_text())
        static = _type_checking_lines(tree)
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                # ``from pkg import submodule`` depends on the submodule
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets = subs or [base]
            for target in targets:
                yield Import(source, target, node.lineno, node.lineno not in static)


def layer(module: str) -> tuple[int, str]:
    for rank, name, prefixes in LAYERS:
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank, name
    return CORE


def graph() -> tuple[set[str], list[Import]]:
    modules = {module_name(p) for p in SRC.rglob("*.py")}
    return modules, list(imports(modules))


def test_layers_point_one_way() -> None:
    _, edges = graph()
    wrong = []
    for e in edges:
        if not e.target.startswith("tureen"):
            continue
        (src_rank, src_name), (dst_rank, dst_name) = layer(e.source), layer(e.target)
        if dst_rank > src_rank:
            wrong.append(f"{e.source}:{e.line} ({src_name}) imports {e.target} ({dst_name})")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_core_never_imports_a_web_framework_or_grpc() -> None:
    _, edges = graph()
    wrong = []
    for e in edges:
        lib = e.target.split(".")[0]
        rank = layer(e.source)[0]
        if lib in WEB and rank <= CORE[0] and lib not in WEB_CLIENTS.get(e.source, set()):
            wrong.append(f"{e.source}:{e.line} imports {e.target}")
    assert not wrong, "\n".join(wrong)


def test_types_and_codecs_use_only_data_libraries() -> None:
    import sys

    _, edges = graph()
    wrong = []
    for e in edges:
        lib = e.target.split(".")[0]
        if layer(e.source)[0] > 1 or lib == "tureen" or lib in sys.stdlib_module_names:
            continue
        if lib not in LOW_LAYER_LIBS:
            wrong.append(f"{e.source}:{e.line} imports {e.target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    modules, edges = graph()
    out: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if e.runtime and e.target in modules and e.target != e.source:
            out[e.source].add(e.target)
    cycles = [c for c in _cycles(out) if not any(
        all(any(m == p or m.startswith(p + ".") for p in known) for m in c)
        for known in KNOWN_CYCLES)]
    assert not cycles, "modules that import each other:\n" + "\n".join(
        " -> ".join(sorted(c)) for c in cycles)


def _cycles(out: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = 0
    for root in sorted(out):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(out[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(out[child]))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(comp)
    return found


def test_the_checker_sees_a_cycle_and_a_wrong_layer() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert layer("tureen.serving.dataplane") < layer("tureen.transports.rest.app")
    assert layer("tureen.codecs.oip_json") < layer("tureen.serving.dataplane")


def test_no_two_packages_import_each_other() -> None:
    """``tureen.X`` packages do not import each other both ways (e.g. the feature server
    and the transformer): one of them belongs lower."""
    modules, edges = graph()

    def package(m: str) -> str:
        """``tureen.X``; a module filed in another layer than its package counts with its
        layer (``tureen.serving.inference`` holds the OIP types: codecs)."""
        top = ".".join(m.split(".")[:2])
        if layer(m) == layer(top):
            return top
        return next(prefixes[0] for rank, _, prefixes in LAYERS if rank == layer(m)[0])

    out: dict[str, set[str]] = {package(m): set() for m in modules}
    for e in edges:
        if e.runtime and e.target in modules and package(e.target) != package(e.source):
            out[package(e.source)].add(package(e.target))
    mutual = sorted({tuple(sorted((a, b))) for a, bs in out.items() for b in bs
                     if a in out.get(b, set())})
    assert not mutual, "packages that import each other: " + "; ".join(
        " <-> ".join(pair) for pair in mutual)
