"""``tureen token``, ``tureen auth check``, ``tureen dev-cert`` and ``tureen audit``."""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from tureen.cli.output import console, err_console, json_option, print_json, repo_option, table


def _store(repo: str) -> Any:
    from tureen.store import FeatureStore

    return FeatureStore(repo)


def _security(store: Any) -> Any:
    return store.config.serving


def _local_audit(store: Any, action: str, resource: str, outcome: str) -> None:
    """Admin actions taken with the CLI are audited too (as the local OS user)."""
    from tureen.auth.audit import event, sink_from_url

    sec = _security(store)
    if sec.audit is None:
        return
    sink = sink_from_url(sec.audit.sink, store.repo_path)
    try:
        sink.write([event(request_id="cli", subject=getpass.getuser(), source="local",
                          token_id=None, action=action, resource=resource, outcome=outcome,
                          status=0, route="cli")])
    finally:
        sink.close()


def _fmt(ts: Any) -> str:
    if ts is None:
        return ""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return str(ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


def _since(text: str | None) -> datetime | None:
    if text is None:
        return None
    from tureen.auth.tokens import parse_duration

    try:
        dt = datetime.fromisoformat(text)
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    except ValueError:
        return datetime.now(UTC) - parse_duration(text)


def register(cli: click.Group) -> None:
    @cli.group()
    def token() -> None:
        """API tokens: create (shown once), list, revoke. Stored hashed in the registry."""

    @token.command("create")
    @click.option("--role", "roles", multiple=True, required=True,
                  help="reader, writer, predictor, deployer, admin or a custom role "
                       "(repeat for several).")
    @click.option("--project", "projects", multiple=True,
                  help="Only this project (pattern; repeat for several). Default: any.")
    @click.option("--deployment", "names", multiple=True,
                  help="Only these deployments/models (pattern, e.g. 'fraud-*'; repeatable).")
    @click.option("--expires", help="Lifetime, e.g. 12h, 30d, 8w. Default: no expiry.")
    @click.option("--name", help="A name to recognise the token by (default: its id).")
    @repo_option
    @json_option
    def token_create(roles: tuple[str, ...], projects: tuple[str, ...], names: tuple[str, ...],
                     expires: str | None, name: str | None, repo: str, as_json: bool) -> None:
        """Create a token and print it once (only its hash is stored)."""
        from tureen.auth.policy import Policy
        from tureen.auth.tokens import Tokens, parse_duration

        store = _store(repo)
        sec = _security(store)
        policy = Policy(sec.auth.roles if sec.auth else None)
        tokens = Tokens(store.registry, policy)
        plain, rec = tokens.create(
            list(roles), projects=projects, names=names,
            expires_in=parse_duration(expires) if expires else None, name=name,
            created_by=getpass.getuser())
        _local_audit(store, "admin", f"token/{rec.id}", "ok")
        if as_json:
            print_json({"token": plain, **rec.public()})
            return
        err_console.print(f"created token [bold]{rec.name}[/] (id {rec.id}, roles "
                          f"{', '.join(rec.roles)}"
                          + (f", expires {_fmt(rec.expires_at)} UTC" if rec.expires_at else "")
                          + "). It is shown only now; store it in a secret manager:")
        click.echo(plain)

    @token.command("list")
    @repo_option
    @json_option
    def token_list(repo: str, as_json: bool) -> None:
        """Every token: id, name, roles, scope, state and when it was last used."""
        from tureen.auth.tokens import Tokens

        tokens = Tokens(_store(repo).registry)
        recs = tokens.list()
        used = tokens.last_used()
        now = datetime.now(UTC)
        if as_json:
            print_json([{**r.public(), "state": r.state(now), "last_used_at": used.get(r.id)}
                        for r in recs])
            return
        table("tokens", ["id", "name", "roles", "projects", "deployments", "state", "created",
                         "expires", "last used"],
              [[r.id, r.name, ",".join(r.roles), ",".join(r.projects) or "*",
                ",".join(r.names) or "*", r.state(now), _fmt(r.created_at), _fmt(r.expires_at),
                _fmt(used.get(r.id))] for r in recs])

    @token.command("revoke")
    @click.argument("ref")
    @repo_option
    @json_option
    def token_revoke(ref: str, repo: str, as_json: bool) -> None:
        """Revoke a token by id or name; running servers refuse it within the registry
        cache TTL."""
        from tureen.auth.tokens import Tokens

        store = _store(repo)
        rec = Tokens(store.registry).revoke(ref)
        _local_audit(store, "admin", f"token/{rec.id}", "ok")
        if as_json:
            print_json(rec.public())
        else:
            console.print(f"revoked token {rec.name} (id {rec.id}) at {_fmt(rec.revoked_at)} UTC")

    @cli.group()
    def auth() -> None:
        """Check what a token may do."""

    @auth.command("check")
    @click.option("--token", "tok", required=True, envvar="TUREEN_TOKEN",
                  help="The token (or env TUREEN_TOKEN).")
    @click.option("--action", required=True,
                  help="read_features, write_features, predict, deploy, model_control, admin.")
    @click.option("--resource", default="", help="PROJECT[/NAME] (NAME: deployment or model); "
                  "default: this repo's project.")
    @repo_option
    @json_option
    def auth_check(tok: str, action: str, resource: str, repo: str, as_json: bool) -> None:
        """Explain whether TOKEN may do ACTION on RESOURCE, and why. Exit 1 when denied."""
        from tureen.auth.explain import explain
        from tureen.auth.policy import Resource, parse_action

        act = parse_action(action)
        store = _store(repo)
        sec = _security(store)
        decision = explain(tok, act, Resource.parse(resource), registry=store.registry,
                           settings=sec.auth, project=store.project)
        if as_json:
            print_json({"allowed": decision.allowed, "reasons": list(decision.reasons)})
        else:
            console.print(decision.explain(), markup=False)
        if not decision.allowed:
            raise SystemExit(1)

    @cli.command("dev-cert")
    @click.option("--out", default="certs", show_default=True,
                  type=click.Path(file_okay=False, path_type=Path))
    @click.option("--host", "hosts", multiple=True,
                  help="Extra DNS name or IP for the server certificate (repeatable).")
    @click.option("--client", "clients", multiple=True,
                  help="Also make a client certificate CN=NAME for mTLS (repeatable).")
    @click.option("--days", default=30, show_default=True, type=int)
    def dev_cert(out: Path, hosts: tuple[str, ...], clients: tuple[str, ...], days: int) -> None:
        """Make a local CA and a server certificate (and client ones) for local TLS."""
        from tureen.auth.devcert import make_dev_certs

        files = make_dev_certs(out, list(hosts), list(clients), days)
        console.print(f"wrote {files.cert}, {files.key} (server) signed by {files.ca}.\n"
                      f"Serve with: --tls-cert {files.cert} --tls-key {files.key}"
                      + (f" --tls-client-ca {files.ca}" if clients else "") + "\n"
                      f"Clients trust it with the CA file {files.ca} (curl --cacert "
                      f"{files.ca}). For local use only: the CA key is beside it.",
                      markup=False)

    @cli.group()
    def audit() -> None:
        """The audit log: who did what, to which resource, with what outcome."""

    def _root(repo: str) -> str:
        from tureen.auth.audit import audit_root
        from tureen.errors import ConfigError

        store = _store(repo)
        sec = _security(store)
        sink = sec.audit.sink if sec.audit else None
        if sink and sink.startswith("kafka://"):
            raise ConfigError("the audit log goes to Kafka: read it with a Kafka consumer of "
                              "the topic in serving.audit.sink.")
        return audit_root(sink, store.repo_path)

    def _print(rows: list[dict[str, Any]], as_json: bool) -> None:
        if as_json:
            print_json(rows)
            return
        table("audit log", ["time (UTC)", "subject", "action", "resource", "outcome", "status",
                            "route", "request id"],
              [[_fmt(r["timestamp"]), f"{r['source']}:{r['subject']}", r["action"],
                r["resource"], r["outcome"], r["status"], r["route"], r["request_id"]]
               for r in rows])

    @audit.command("tail")
    @click.option("-n", "--lines", default=20, show_default=True, type=int)
    @click.option("--follow", "-f", is_flag=True, help="Keep printing new events (Ctrl-C).")
    @repo_option
    @json_option
    def audit_tail(lines: int, follow: bool, repo: str, as_json: bool) -> None:
        """The newest events."""
        from tureen.auth.audit import read_events

        root = _root(repo)
        rows = read_events(root, limit=lines)
        _print(rows, as_json)
        last = rows[-1]["timestamp"] if rows else None
        while follow:
            time.sleep(1.0)
            since = last + timedelta(microseconds=1) if last else None
            new = read_events(root, since=since)
            if new:
                _print(new, as_json)
                last = new[-1]["timestamp"]

    @audit.command("query")
    @click.option("--since", help="ISO time or a duration back from now (1h, 7d).")
    @click.option("--until", help="ISO time (exclusive).")
    @click.option("--subject", help="Token name, OIDC subject or certificate subject.")
    @click.option("--action", help="read_features, write_features, predict, deploy, "
                  "model_control, admin, authenticate.")
    @click.option("--outcome", type=click.Choice(["ok", "error", "denied", "unauthenticated"]))
    @click.option("--request-id")
    @click.option("--limit", type=int, help="Only the newest N matches.")
    @repo_option
    @json_option
    def audit_query(since: str | None, until: str | None, subject: str | None,
                    action: str | None, outcome: str | None, request_id: str | None,
                    limit: int | None, repo: str, as_json: bool) -> None:
        """Events matching every filter given, oldest first."""
        from tureen.auth.audit import read_events

        rows = read_events(_root(repo), since=_since(since), until=_since(until),
                           subject=subject, action=action, outcome=outcome,
                           request_id=request_id, limit=limit)
        _print(rows, as_json)
