"""Regenerate the compiled pipelines in this folder (needs kfp): python make_ir.py.

They use container components only (``sh`` and ``python3 -c``), so the runner's tests run
them without kfp installed. ``test_kfp_constructs.py`` covers the same constructs written
with Python components and compiled on the fly.
"""

from pathlib import Path

from kfp import compiler, dsl

HERE = Path(__file__).parent
PY = "python3"


@dsl.container_component
def emit(value: str, out: dsl.OutputPath(str)):  # type: ignore[valid-type]
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'printf %s "$0" > "$1"'],
                             args=[value, out])


@dsl.container_component
def emit_int(value: int, out: dsl.OutputPath(int)):  # type: ignore[valid-type]
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'printf %s "$0" > "$1"'],
                             args=[value, out])


@dsl.container_component
def square(x: int, out: dsl.OutputPath(int)):  # type: ignore[valid-type]
    return dsl.ContainerSpec(image="python:3.11", command=[PY, "-c", (
        "import sys; x = sys.argv[1]; assert x.isdigit(), x; "
        "open(sys.argv[2], 'w').write(str(int(x) ** 2))")], args=[x, out])


@dsl.container_component
def total(xs: list, out: dsl.OutputPath(int)):  # type: ignore[valid-type]
    return dsl.ContainerSpec(image="python:3.11", command=[PY, "-c", (
        "import json, sys; xs = json.loads(sys.argv[1]); "
        "assert all(type(x) is int for x in xs), xs; "
        "open(sys.argv[2], 'w').write(str(sum(xs)))")], args=[xs, out])


@dsl.container_component
def fail(message: str):
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c",
                                                      'echo "about to fail: $0"; exit 3'],
                             args=[message])


@dsl.container_component
def flaky(marker: str, out: dsl.OutputPath(str)):  # type: ignore[valid-type]
    """Fails until it has run twice (counts in the file `marker`)."""
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", (
        'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; '
        'echo "attempt $n"; [ $n -ge 3 ] && printf ok > "$1"')], args=[marker, out])


@dsl.container_component
def show_env(out: dsl.OutputPath(str)):  # type: ignore[valid-type]
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c",
                                                      'printf "%s" "$GREETING" > "$0"'],
                             args=[out])


@dsl.container_component
def write_file(text: str, data: dsl.Output[dsl.Dataset]):
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'printf %s "$0" > "$1"'],
                             args=[text, data.path])


@dsl.container_component
def read_file(data: dsl.Input[dsl.Dataset], out: dsl.OutputPath(str)):  # type: ignore[valid-type]
    return dsl.ContainerSpec(image="alpine", command=["sh", "-c", 'cat "$0" > "$1"'],
                             args=[data.path, out])


@dsl.pipeline(name="branches")
def branches(coin: str = "heads", n: int = 5):
    with dsl.If(coin == "heads"):
        h = emit(value="H")
    with dsl.Elif(coin == "tails"):
        t = emit(value="T")
    with dsl.Else():
        e = emit(value="E")
    picked = dsl.OneOf(h.output, t.output, e.output)
    emit(value=picked).set_display_name("picked")
    with dsl.If(n > 3):
        emit(value="big")
    with dsl.If(n <= 3):
        emit(value="small")


@dsl.pipeline(name="loops")
def loops(items: list = [1, 2, 3]):  # noqa: B006
    with dsl.ParallelFor(items, parallelism=2) as it:
        s = square(x=it)
    total(xs=dsl.Collected(s.output))
    with dsl.ParallelFor([4, 5]) as raw:
        r = square(x=raw)
    total(xs=dsl.Collected(r.output)).set_display_name("total-raw")


@dsl.pipeline(name="failing")
def failing(message: str = "boom"):
    goodbye = emit(value="exit handler ran")
    with dsl.ExitHandler(goodbye):
        first = emit(value="before")
        f = fail(message=message).after(first)
        emit(value="after").after(f)


@dsl.pipeline(name="options")
def options(marker: str):
    flaky(marker=marker).set_retry(num_retries=3, backoff_duration="0s")
    show_env().set_env_variable("GREETING", "hello").set_cpu_limit("2").set_memory_limit("1G")
    w = write_file(text="payload")
    read_file(data=w.outputs["data"])
    emit(value=f"id-{emit_int(value=7).output}").set_display_name("fstring")


if __name__ == "__main__":
    for p in (branches, loops, failing, options):
        compiler.Compiler().compile(p, str(HERE / f"{p.name}.yaml"))
