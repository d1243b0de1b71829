"""KFP v2 pipelines written with the SDK, run by ``test_kfp_constructs.py`` (needs kfp)."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import (
    ClassificationMetrics,
    Dataset,
    Input,
    Metrics,
    Output,
    PipelineTaskFinalStatus,
)

IMG = "python:3.11"


@dsl.component(base_image=IMG)
def flip(p: float) -> str:
    return "heads" if p > 0.5 else ("tails" if p > 0.1 else "edge")


@dsl.component(base_image=IMG)
def say(msg: str) -> str:
    print("say:", msg)
    return msg


@dsl.component(base_image=IMG)
def is_big(n: int) -> bool:
    return n > 3


@dsl.component(base_image=IMG)
def square(x: int) -> int:
    assert type(x) is int, f"x is {type(x).__name__}"
    return x * x


@dsl.component(base_image=IMG)
def half(x: int) -> float:
    return x / 2


@dsl.component(base_image=IMG)
def describe(xs: list, ys: list, nested: list) -> str:
    import json

    kinds = {"xs": sorted({type(x).__name__ for x in xs}),
             "ys": sorted({type(y).__name__ for y in ys}),
             "nested": sorted({type(v).__name__ for row in nested for v in row})}
    return json.dumps({"xs": xs, "ys": ys, "nested": nested, "kinds": kinds})


@dsl.component(base_image=IMG)
def write(text: str, out: Output[Dataset]) -> None:
    with open(out.path, "w") as f:
        f.write(text)
    out.metadata["chars"] = len(text)


@dsl.component(base_image=IMG)
def join(parts: Input[list[Dataset]]) -> str:
    return "+".join(open(p.path).read() for p in parts)


@dsl.component(base_image=IMG)
def pair() -> NamedTuple("Pair", [("count", int), ("label", str)]):  # type: ignore[valid-type]
    return (2, "two")


@dsl.component(base_image=IMG)
def boom(message: str) -> None:
    raise ValueError(f"this step broke: {message}")


@dsl.component(base_image=IMG)
def report(status: PipelineTaskFinalStatus, out: Output[Dataset]) -> None:
    import json

    with open(out.path, "w") as f:
        json.dump({"state": status.state, "error": status.error_message,
                   "task": status.pipeline_task_name}, f)


@dsl.component(base_image=IMG)
def flaky(counter: str) -> int:
    import os

    n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    open(counter, "w").write(str(n))
    if n < 3:
        raise RuntimeError(f"attempt {n} fails")
    return n


@dsl.component(base_image=IMG)
def read_env(name: str) -> str:
    import os

    return os.environ.get(name, "<unset>")


@dsl.component(base_image=IMG)
def score(metrics: Output[Metrics], cls: Output[ClassificationMetrics]) -> None:
    metrics.log_metric("auc", 0.91)
    metrics.log_metric("rows", 100)
    cls.log_confusion_matrix(["no", "yes"], [[50, 3], [4, 43]])
    cls.log_roc_curve([0.0, 0.1, 1.0], [0.0, 0.8, 1.0], [1.0, 0.5, 0.0])


@dsl.pipeline
def conditions(p: float = 0.7, n: int = 5) -> None:
    f = flip(p=p)
    with dsl.If(f.output == "heads"):
        h = say(msg="H")
    with dsl.Elif(f.output == "tails"):
        t = say(msg="T")
    with dsl.Else():
        e = say(msg="E")
    say(msg=dsl.OneOf(h.output, t.output, e.output)).set_display_name("picked")
    b = is_big(n=n)
    with dsl.If(b.output == True):  # noqa: E712 - how KFP conditions on a bool output
        say(msg="big").set_display_name("big")
    with dsl.If(n <= 3):
        say(msg="small").set_display_name("small")


@dsl.pipeline
def collected(items: list = [1, 2, 3]) -> None:  # noqa: B006 - a KFP default
    with dsl.ParallelFor(items) as x:
        s = square(x=x)
        h = half(x=x)
    with dsl.ParallelFor([1, 2]) as i:
        with dsl.ParallelFor([10, 20]) as j:
            inner = square(x=j)
    describe(xs=dsl.Collected(s.output), ys=dsl.Collected(h.output),
             nested=dsl.Collected(inner.output))
    with dsl.ParallelFor(["a", "b"]) as text:
        w = write(text=text)
    join(parts=dsl.Collected(w.outputs["out"]))
    del i


@dsl.pipeline
def exit_status(fail: bool = True) -> None:
    r = report()
    with dsl.ExitHandler(r):
        say(msg="working")
        with dsl.If(fail == True):  # noqa: E712
            boom(message="on purpose")


@dsl.pipeline
def options(counter: str) -> None:
    flaky(counter=counter).set_retry(num_retries=3, backoff_duration="0s")
    read_env(name="GREETING").set_env_variable("GREETING", "hi").set_accelerator_type(
        "nvidia.com/gpu").set_accelerator_limit(1)
    pr = pair()
    say(msg=f"{pr.outputs['label']}={pr.outputs['count']}").set_display_name("fstring")
    score()
    dsl.importer(artifact_uri=counter, artifact_class=Dataset, reimport=False,
                 metadata={"source": "test"})


@dsl.pipeline
def inner(x: int) -> int:
    return square(x=x).output


@dsl.pipeline
def outer(x: int = 3) -> None:
    i = inner(x=x)
    square(x=i.output).set_display_name("again")


@dsl.component(base_image=IMG)
def produce() -> int:
    return "abc"  # type: ignore[return-value]


@dsl.pipeline
def wrong_return() -> None:
    square(x=produce().output)
