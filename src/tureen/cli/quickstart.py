"""``tureen quickstart``: the end-to-end fraud demo (see ``tureen.quickstart``)."""

from __future__ import annotations

import json
from pathlib import Path

import click


def register(cli: click.Group) -> None:
    @cli.command("quickstart")
    @click.option("--accounts", default=1000, show_default=True, type=int,
                  help="Synthetic accounts to generate.")
    @click.option("--requests", "repeats", default=200, show_default=True, type=int,
                  help="Timed single-row requests per protocol.")
    @click.option("--keep", type=click.Path(path_type=Path),
                  help="Build the repo in this (new) folder and keep it, instead of a "
                       "temporary folder.")
    @click.option("--http_port", type=int, help="HTTP port of the demo server [a free one].")
    @click.option("--grpc_port", type=int, help="gRPC port of the demo server [a free one].")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
    def quickstart(accounts: int, repeats: int, keep: Path | None, http_port: int | None,
                   grpc_port: int | None, as_json: bool) -> None:
        """Build a fraud-detection repo, train, serve and score it, end to end (< 60 s)."""
        from rich.console import Console
        from rich.table import Table

        from tureen.quickstart import run_quickstart

        console = Console(stderr=True)
        status = console.status("starting")
        status.start()

        def on_step(event: str, msg: str) -> None:
            if event == "start":
                status.update(f"[bold]{msg}[/] …")
            else:
                console.print(f"[green]✓[/] {msg}")

        try:
            result = run_quickstart(accounts=accounts, repeats=repeats, keep=keep,
                                    on_step=on_step, http_port=http_port, grpc_port=grpc_port)
        finally:
            status.stop()
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=2))
            return
        out = Console()
        preds = Table(title="fraud probability per account (fused transformer)")
        for col in ("account_id", "amount", "KServe v1", "OIP REST", "OIP gRPC"):
            preds.add_column(col, justify="right")
        for p in result.predictions:
            preds.add_row(str(p["account_id"]), f"{p['amount']:.2f}", f"{p['p_fraud_v1']:.4f}",
                          f"{p['p_fraud_v2']:.4f}", f"{p['p_fraud_grpc']:.4f}")
        out.print(preds)
        lat = Table(title="latency per single-row request (ms, client side)")
        for col in ("protocol", "p50", "p99", "mean", "n"):
            lat.add_column(col, justify="right")
        for proto, s in result.latency_ms.items():
            lat.add_row(proto, f"{s['p50']:.3f}", f"{s['p99']:.3f}", f"{s['mean']:.3f}",
                        str(int(s["n"])))
        out.print(lat)
        out.print(f"model test AUC {result.metrics.get('auc')}; account 999999 does not exist "
                  "and was scored with the declared defaults (missing.policy: default).")
        out.print(f"[bold green]quickstart finished in {result.total_seconds:.1f} s[/]")
