"""Feature-repo commands: init, plan, apply, materialize, get-*-features, features, teardown."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tureen.cli.output import (
    console,
    err_console,
    json_option,
    print_json,
    progress_bar,
    repo_option,
    rows_progress,
    table,
)
from tureen.errors import InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from tureen.registry.service import Plan
    from tureen.store import FeatureStore


def _store(repo: str) -> FeatureStore:
    from tureen.store import FeatureStore

    return FeatureStore(repo)


def _parse_time(value: str, what: str) -> datetime:
    if value == "now":
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequestError(
            f"{what} {value!r} is not an ISO 8601 time; write e.g. 2026-01-31 or "
            "2026-01-31T12:00:00+00:00, or 'now'."
        ) from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def _print_plan(plan: Plan, applied: bool) -> None:
    rows = [(c.action, c.kind, c.name) for c in plan.changes if c.action != "unchanged"]
    if not rows:
        console.print("No changes: the registry matches the definitions.")
        return
    colour = {"create": "green", "update": "yellow", "delete": "red"}
    for action, kind, name in rows:
        verb = f"{action}d" if applied else f"will {action}"
        console.print(f"[{colour[action]}]{verb}[/] {kind} [bold]{name}[/]")


def register(cli: click.Group) -> None:
    @cli.command()
    @click.argument("directory", type=click.Path(file_okay=False))
    @click.option("--accounts", default=1000, show_default=True, help="Synthetic accounts.")
    @click.option("--force", is_flag=True, help="Write into a non-empty folder.")
    def init(directory: str, accounts: int, force: bool) -> None:
        """Create a runnable fraud-detection feature repo with sample data in DIRECTORY."""
        from tureen.examples.fraud import create_repo

        dest = create_repo(Path(directory), accounts=accounts, force=force)
        console.print(f"Created feature repo [bold]{dest}[/] with sample data. Next:\n"
                      f"  cd {directory} && tureen apply && tureen materialize-incremental now\n"
                      "Train, register and deploy with the Kubeflow pipeline in pipelines/ "
                      "(pip install 'tureen[pipelines]'):\n"
                      "  tureen pipeline run pipelines/train_fraud.py")

    @cli.command()
    @repo_option
    def plan(repo: str) -> None:
        """Show what `tureen apply` would create, change or delete."""
        _print_sources(repo)
        _print_plan(_store(repo).plan(), applied=False)

    @cli.command()
    @repo_option
    def apply(repo: str) -> None:
        """Validate the repo's definitions and store them in the registry."""
        store = _store(repo)
        plan = store.apply()
        _print_plan(plan, applied=True)
        console.print(f"Registry version {store.snapshot().version} "
                      f"({store.registry.store.describe()}).")

    @cli.command()
    @repo_option
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    def teardown(repo: str, yes: bool) -> None:
        """Delete all online data and the registry (definition files are kept)."""
        if not yes:
            click.confirm("Delete every view's online data and the registry?", abort=True)
        _store(repo).teardown()
        console.print("Torn down: online data and registry deleted.")

    @cli.command()
    @repo_option
    @click.argument("start")
    @click.argument("end")
    @click.option("--views", "-v", multiple=True, help="Only these views (repeatable).")
    @click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
    def materialize(repo: str, start: str, end: str, views: tuple[str, ...],
                    no_progress: bool) -> None:
        """Load the latest rows in [START, END) per entity into the online store."""
        store = _store(repo)
        with progress_bar(not no_progress) as progress:
            done = store.materialize(_parse_time(start, "START"), _parse_time(end, "END"),
                                     list(views) or None, progress)
        _print_done(done)

    @cli.command("materialize-incremental")
    @repo_option
    @click.argument("end")
    @click.option("--views", "-v", multiple=True, help="Only these views (repeatable).")
    @click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
    def materialize_incremental(repo: str, end: str, views: tuple[str, ...],
                                no_progress: bool) -> None:
        """Materialize each view from where the last run stopped up to END ('now' works)."""
        store = _store(repo)
        with progress_bar(not no_progress) as progress:
            done = store.materialize_incremental(_parse_time(end, "END"),
                                                 list(views) or None, progress)
        _print_done(done)

    @cli.command("get-historical-features")
    @repo_option
    @click.option("--entities", "-e", type=click.Path(),
                  help="Parquet or CSV file, or folder of Parquet files, of entity rows (join "
                  "keys + event_timestamp).")
    @click.option("--service", "-s", help="Feature service name.")
    @click.option("--features", "-f", multiple=True, help="view:feature (repeatable).")
    @click.option("--out", "-o", required=True, type=click.Path(),
                  help="Output: a .parquet or .csv file, or a folder (Parquet dataset).")
    @click.option("--full-feature-names", is_flag=True, help="Name columns view__feature.")
    @click.option("--timestamp-column", help="The entity rows' time column [event_timestamp, "
                  "or their only timestamp column].")
    @click.option("--start", help="Without --entities: feature rows from this time (ISO 8601).")
    @click.option("--end", help="Without --entities: feature rows before this time ('now').")
    @click.option("--filter", "filters", multiple=True,
                  help="Without --entities: only this join_key=value (repeatable).")
    @click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
    @json_option
    def get_historical_features(repo: str, entities: str | None, service: str | None,
                                features: tuple[str, ...], out: str,
                                full_feature_names: bool, timestamp_column: str | None,
                                start: str | None, end: str | None,
                                filters: tuple[str, ...], no_progress: bool,
                                as_json: bool) -> None:
        """Build a point-in-time-correct training set, streamed to OUT chunk by chunk.

        Entity rows come from --entities, or, with --start/--end, from the feature rows
        themselves: every row version in [START, END), each with the features as of its own
        time. The result is written under a hidden staging name and renamed at the end: an
        error or Ctrl-C leaves nothing partial at OUT."""
        store = _store(repo)
        chosen = _features(service, features)
        if entities and (start or end or filters):
            raise InvalidRequestError("pass either --entities or --start/--end, not both.")
        if timestamp_column and not entities:
            raise InvalidRequestError("--timestamp-column names a column of --entities; pass "
                                      "--entities too.")
        if entities:
            job = store.get_historical_features(entities, chosen, full_feature_names,
                                                timestamp_column=timestamp_column)
        elif start or end:
            job = store.get_historical_features(
                None, chosen, full_feature_names,
                start_date=_parse_time(start, "--start") if start else None,
                end_date=_parse_time(end, "--end") if end else None,
                entity_filter=_entity_rows(store, filters, "--filter"))
        else:
            raise InvalidRequestError(
                "pass --entities FILE_OR_FOLDER of entity rows, or --start/--end to use the "
                "feature rows in that range as entity rows.")
        started = time.monotonic()
        with rows_progress("Joining features point-in-time", not no_progress and not as_json
                           ) as progress:
            rows = job.to_file(out, progress=progress)
        columns = len(job.feature_names)
        summary = {"rows": rows, "features": columns, "out": out,
                   "seconds": round(time.monotonic() - started, 3)}
        if as_json:
            print_json(summary)
        else:
            console.print(f"Wrote {rows} rows × {columns} features to {out} "
                          f"in {summary['seconds']:.1f} s.")

    @cli.command("get-online-features")
    @repo_option
    @click.option("--service", "-s", help="Feature service name.")
    @click.option("--features", "-f", multiple=True, help="view:feature (repeatable).")
    @click.option("--entity", "-e", "entity", multiple=True, required=True,
                  help="join_key=value (repeat a key for several entities).")
    @click.option("--full-feature-names", is_flag=True)
    @json_option
    def get_online_features(repo: str, service: str | None, features: tuple[str, ...],
                            entity: tuple[str, ...], full_feature_names: bool,
                            as_json: bool) -> None:
        """Read features of one or more entities from the online store."""
        store = _store(repo)
        rows = _entity_rows(store, entity)
        resp = store.get_online_features(_features(service, features), rows, full_feature_names)
        if as_json:
            print_json(resp.to_feast_json())
            return
        # one row per feature, one column per entity: a value, or its status when there is
        # none (NOT_FOUND for an unknown entity, NULL_VALUE, OUTSIDE_MAX_AGE)
        data, statuses, keys = resp.to_dict(), resp.statuses, resp.join_keys
        entities = [", ".join(f"{k}={data[k][i]}" for k in keys) for i in range(len(resp))]
        cells = [[name, *(v if s == "PRESENT" else str(s)
                          for v, s in zip(data[name], statuses[name], strict=True))]
                 for name in statuses]
        table("Online features", ["feature", *entities], cells)

    @cli.command("registry-dump")
    @repo_option
    @click.option("--history", is_flag=True, help="Print the apply history instead.")
    def registry_dump(repo: str, history: bool) -> None:
        """Print the registry (or its history) as JSON."""
        store = _store(repo)
        print_json(store.registry.history() if history else store.snapshot().to_dict())

    @cli.group()
    def features() -> None:
        """List and describe definitions."""

    @features.command("list")
    @repo_option
    @json_option
    def features_list(repo: str, as_json: bool) -> None:
        """List feature views, on-demand views and services."""
        store = _store(repo)
        snap = store.snapshot()
        online = _online_states(store)
        rows: list[list[Any]] = []
        for v in snap.feature_views.values():
            state = online.get(v.name)
            rows.append(["feature view", v.name, ", ".join(v.join_keys),
                         ", ".join(f"{f.name}:{f.dtype}" for f in v.features),
                         str(v.ttl) if v.ttl_seconds else "∞",
                         state.until if state else None,
                         state.status if state else ("offline only" if not v.online else "?")])
        for o in snap.on_demand_views.values():
            rows.append(["on-demand view", o.name, "",
                         ", ".join(f"{f.name}:{f.dtype}" for f in o.features), "", None, None])
        for s in snap.feature_services.values():
            rows.append(["feature service", s.name, "",
                         ", ".join(f"{v}[{','.join(f) if f else '*'}]"
                                   for v, f in s.projections()), "", None, None])
        if as_json:
            cols = ["kind", "name", "join_keys", "features", "ttl", "materialized_until",
                    "online"]
            print_json([dict(zip(cols, r, strict=True)) for r in rows])
            return
        table(f"Project {snap.project} (registry v{snap.version}; online store "
              f"{store.config.online_store.type})",
              ["kind", "name", "keys", "features", "ttl", "materialized until", "online"], rows)
        for state in online.values():
            if state.status != "ok":
                err_console.print(f"[yellow]{state.status}:[/] {state.message}")

    @features.command("describe")
    @repo_option
    @click.argument("name")
    @json_option
    def features_describe(repo: str, name: str, as_json: bool) -> None:
        """Describe one view or service as stored in the registry."""
        snap = _store(repo).snapshot()
        obj: Any
        if name in snap.feature_services:
            obj = snap.feature_services[name]
        else:
            obj = snap.any_view(name)
        data = obj.to_dict()
        if as_json:
            print_json(data)
        else:
            console.print_json(data=data)


def _print_sources(repo: str) -> None:
    """Which files `plan` executes and which it leaves alone (so a train.py never runs)."""
    from tureen.repo_loader import scan

    root = Path(repo).resolve()
    found = scan(root)
    console.print("Definition files: " + (", ".join(
        str(p.relative_to(root)) for p in found.files) or "none"))
    for path, why in found.skipped:
        console.print(f"[dim]not loaded: {path.relative_to(root)} — {why}[/]")


def _print_done(done: list[Any]) -> None:
    for r in done:
        if r.note:
            err_console.print(f"[yellow]note:[/] {r.note}")
        console.print(f"{r.view}: {r.rows} entities [{r.start:%Y-%m-%d %H:%M} → "
                      f"{r.end:%Y-%m-%d %H:%M}]")


def _online_states(store: FeatureStore) -> dict[str, Any]:
    """View -> its state in the online store (None for every view when it is unreachable)."""
    from tureen.errors import BackendUnavailableError

    try:
        return {s.view: s for s in store.online_state()}
    except BackendUnavailableError as exc:
        err_console.print(f"[yellow]warning:[/] {exc}")
        return {}


def _features(service: str | None, features: tuple[str, ...]) -> Any:
    if service and features:
        raise InvalidRequestError("pass either --service or --features, not both.")
    if not service and not features:
        raise InvalidRequestError("pass --service NAME or one or more --features view:feature.")
    return service or list(features)


def _entity_rows(store: FeatureStore, pairs: tuple[str, ...],
                 option: str = "--entity") -> dict[str, list[Any]]:
    snap = store.snapshot()
    key_types = {f.name: f.dtype for e in snap.entities.values() for f in e.key_fields}
    rows: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise InvalidRequestError(f"{option} {pair!r}: write join_key=value.")
        dtype = key_types.get(key)
        if dtype is None:
            raise NotFoundError(f"{option} {key!r} is not a join key of any entity; known: "
                                f"{', '.join(sorted(key_types))}.")
        try:
            value: Any = dtype.python(raw) if dtype.python in (int, float, str) else raw
        except ValueError:
            raise InvalidRequestError(f"{option} {key}={raw!r}: expected {dtype}.") from None
        rows.setdefault(key, []).append(value)
    return rows
