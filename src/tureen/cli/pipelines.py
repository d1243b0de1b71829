"""``tureen pipeline``: run KFP v2 pipelines locally, compile them for Kubeflow, read runs."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from tureen.cli.output import console, json_option, print_json, repo_option
from tureen.errors import InvalidRequestError


def _params(values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise InvalidRequestError(f"--param {v!r}: write NAME=VALUE.")
        out[key.strip()] = value
    return out


def register(cli: click.Group) -> None:
    @cli.group()
    def pipeline() -> None:
        """Kubeflow pipelines: run locally (offline, this environment) or compile for KFP."""

    @pipeline.command("run")
    @click.argument("target")
    @click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
                  help="A pipeline parameter (repeat); typed as the pipeline declares it.")
    @click.option("--resume-from", metavar="[RUN_ID:]STEP",
                  help="Rerun STEP and what follows it, reusing the earlier tasks' outputs "
                       "from the last run (or RUN_ID).")
    @click.option("--no-cache", is_flag=True, help="Run every task (results still cached).")
    @click.option("--parallel", type=click.IntRange(1, 256), default=None,
                  help="Tasks running at once (default: CPU count).")
    @click.option("--isolation", type=click.Choice(["auto", "fork", "forkserver", "subprocess"]),
                  default="auto", show_default=True,
                  help="How task processes start (auto: fork while this process has one "
                       "thread, else from a fork server).")
    @repo_option
    @json_option
    def run(target: str, params: tuple[str, ...], resume_from: str | None, no_cache: bool,
            parallel: int | None, isolation: str, repo: str, as_json: bool) -> None:
        """Run TARGET (FILE.py[:PIPELINE] or a compiled YAML) on this machine."""
        from tureen.cli.pipeline_view import live_view, print_run, print_warnings
        from tureen.pipelines.local import PipelineRunError, run_pipeline

        with live_view(enabled=not as_json) as update:
            try:
                record = run_pipeline(target, _params(params), repo=repo,
                                      use_cache=not no_cache, resume_from=resume_from,
                                      isolation=isolation, max_parallel=parallel,
                                      on_update=update,
                                      on_start=None if as_json else print_warnings)
            except PipelineRunError as exc:
                if as_json:
                    from tureen.pipelines.runs import RunStore

                    print_json(RunStore.for_repo(repo).get(exc.run_id).model_dump(mode="json"))
                raise InvalidRequestError(f"{exc} (run {exc.run_id})") from None
        if as_json:
            print_json(record.model_dump(mode="json"))
        else:
            from tureen.cli.output import err_console

            # the live view left the task table on the terminal
            print_run(record, show_warnings=False, show_tasks=not err_console.is_terminal)
        if record.state.value != "SUCCEEDED":
            sys.exit(1)

    @pipeline.command("compile")
    @click.argument("target")
    @click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
                  help="Where to write the compiled pipeline (YAML).")
    @click.option("--image", default=None,
                  help="Image for tureen's components (default tureen:latest).")
    @click.option("--image-context", type=click.Path(file_okay=False), default=None,
                  help="Also write a Dockerfile and build context for that image here.")
    @repo_option
    def compile_(target: str, out: str, image: str | None, image_context: str | None,
                 repo: str) -> None:
        """Compile FILE.py[:PIPELINE] to KFP IR YAML that a Kubeflow backend runs."""
        from tureen.pipelines.compile import compile_pipeline, write_image_context

        result = compile_pipeline(target, Path(out), image=image, repo=repo)
        console.print(f"Wrote [bold]{out}[/]: pipeline {result.name!r}, {result.tasks} tasks, "
                      f"tureen image {result.image}.")
        for w in result.warnings:
            console.print(f"[yellow]warning:[/] {w}")
        if image_context:
            files = write_image_context(Path(repo), Path(image_context))
            console.print(f"Wrote the image build context to {image_context} "
                          f"({', '.join(files)}); build it with: "
                          f"docker build -t {result.image} {image_context}")

    @pipeline.group()
    def runs() -> None:
        """Pipeline run records of the repo (data/pipeline_runs)."""

    @runs.command("list")
    @click.option("--pipeline", "name", default=None, help="Only runs of this pipeline.")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
    @repo_option
    @json_option
    def list_(name: str | None, limit: int, repo: str, as_json: bool) -> None:
        """Recent runs, newest first."""
        from tureen.pipelines.runs import RunStore

        records = RunStore.for_repo(repo).list(pipeline=name, limit=limit)
        if as_json:
            print_json([r.model_dump(mode="json", exclude={"tasks"}) | {"counts": r.counts()}
                        for r in records])
            return
        from tureen.cli.pipeline_view import runs_table

        console.print(runs_table(records))

    @runs.command("show")
    @click.argument("run_id")
    @click.option("--log", "log_task", default=None, metavar="TASK",
                  help="Print the log of TASK (its last attempt).")
    @click.option("--tail", type=click.IntRange(1, 10_000), default=None)
    @repo_option
    @json_option
    def show(run_id: str, log_task: str | None, tail: int | None, repo: str,
             as_json: bool) -> None:
        """One run (RUN_ID or 'latest'): tasks, states, cache reasons, metrics, errors."""
        from tureen.cli.pipeline_view import print_run
        from tureen.errors import NotFoundError
        from tureen.pipelines.runs import RunStore

        store = RunStore.for_repo(repo)
        if run_id == "latest":
            latest = store.latest()
            if latest is None:
                raise NotFoundError("no pipeline runs yet; run one with `tureen pipeline run`.")
            run_id = latest.id
        if log_task is not None:
            sys.stdout.write(store.log(run_id, log_task, tail=tail) + "\n")
            return
        record = store.get(run_id)
        if as_json:
            print_json(record.model_dump(mode="json"))
            return
        print_run(record)

    @pipeline.group()
    def cache() -> None:
        """The local task cache (data/pipeline_cache)."""

    @cache.command("clear")
    @repo_option
    def clear(repo: str) -> None:
        """Forget every cached task result (run records and artifacts stay)."""
        from tureen.pipelines.cache import TaskCache

        n = TaskCache.for_repo(repo).clear()
        console.print(f"Removed {n} cached task results.")
