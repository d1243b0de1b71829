"""The console's parts alone: keyset pages, secrets masked, log lines tailed and followed,
SVG escaped and readable without colour."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tureen.console import svg
from tureen.console.logtail import LogFilter, follow, parse_line, tail
from tureen.console.model_index import ModelIndex
from tureen.console.paging import after, decode_cursor
from tureen.console.redact import redact_options, redact_url
from tureen.deployments.status import file_logger, log_path
from tureen.errors import InvalidRequestError
from tureen.models.store import ModelStore
from tureen.serving.context import request_id


def test_keyset_pages_cover_everything_once() -> None:
    items = list(range(1, 1001))
    seen, cursor = [], None
    while True:
        page = after(sorted(items, reverse=True), lambda v: (-v,), cursor, 97)
        seen.extend(page.items)
        if page.next is None:
            break
        cursor = decode_cursor(page.next, 1)
    assert seen == sorted(items, reverse=True)


def test_a_bad_cursor_is_a_clear_error() -> None:
    for bad in ("x", "eyJhIjoxfQ", "WzEsMl0"):  # junk, an object, the wrong arity
        with pytest.raises(InvalidRequestError, match="cursor"):
            decode_cursor(bad, 1)


def test_a_page_of_versions_reads_only_that_page(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    src = tmp_path / "m"
    src.mkdir()
    (src / "model.joblib").write_bytes(b"x")
    for _ in range(120):
        store.register("big", src, "sklearn", metrics={"auc": 0.5})
    reads: list[int] = []
    real = store.read

    def spy(name: str, version: int):  # type: ignore[no-untyped-def]
        reads.append(version)
        return real(name, version)

    store.read = spy  # type: ignore[method-assign]
    index = ModelIndex(store)
    numbers = index.versions("big")
    assert numbers == list(range(1, 121)) and reads == []
    assert [mv.version for mv in index.read("big", numbers[-20:])] == list(range(101, 121))
    assert reads == list(range(101, 121))
    reads.clear()
    assert len(index.summaries("big")) == 120 and len(reads) == 120
    reads.clear()
    index.summaries("big")  # unchanged files are not read again
    assert reads == []
    store.update_metrics("big", 7, {"auc": 0.99})
    index._checked.clear()  # as when RECHECK_SECONDS have passed
    assert {s.version: s.metrics["auc"] for s in index.summaries("big")}[7] == 0.99
    assert reads == [7]


def test_urls_and_options_lose_their_secrets() -> None:
    assert redact_url("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("postgresql://bob:hunter2@db/x") == "postgresql://bob:***@db/x"
    out = redact_url("kafka://k:9092?sasl.password=abc&topic_prefix=t")
    assert out is not None and "abc" not in out and "topic_prefix=t" in out
    assert redact_url("https://h/x?token=abc&a=1") == "https://h/x?token=***&a=1"
    opts = redact_options({"url": "redis://u:pw@h", "password": "pw", "path": "data",
                           "storage_options": {"key": "AKIA", "secret": "s"}})
    assert "pw" not in str(opts) and "AKIA" not in str(opts) and opts["path"] == "data"


def test_log_lines_tail_and_filter(tmp_path: Path) -> None:
    logger = file_logger(tmp_path, "dep", "predictor", "")
    for i in range(500):
        token = request_id.set(f"rid-{i}")
        try:
            (logger.warning if i % 50 == 0 else logger.info)("line %d", i)
        finally:
            request_id.reset(token)
    lines = tail(tmp_path, "dep", LogFilter(), 30)
    assert [x["message"] for x in lines] == [f"line {i}" for i in range(470, 500)]
    warn = tail(tmp_path, "dep", LogFilter.parse("", "warning", ""), 100)
    assert [x["message"] for x in warn] == [f"line {i}" for i in range(0, 500, 50)]
    one = tail(tmp_path, "dep", LogFilter.parse("predictor", "", "rid-123"), 10)
    assert [x["request_id"] for x in one] == ["rid-123"]
    with pytest.raises(InvalidRequestError, match="component"):
        LogFilter.parse("database", "", "")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


def test_unparsable_lines_are_kept_as_text() -> None:
    line = parse_line("Traceback (most recent call last):", "predictor")
    assert line["message"].startswith("Traceback") and line["level"] == "INFO"


async def test_follow_delivers_new_lines_and_resumes(tmp_path: Path) -> None:
    path = log_path(tmp_path, "dep", "predictor")
    path.parent.mkdir(parents=True)
    path.write_text("2026-01-01 00:00:00,000 INFO 1 x [-]: old\n")
    got: list[str] = []
    offsets: dict[str, int] = {}

    async def run() -> None:
        async for lines, offs in follow(tmp_path, "dep", LogFilter(), 2.0):
            got.extend(x["message"] for x in lines)
            offsets.update(offs)
            if got:
                return

    task = asyncio.create_task(run())
    await asyncio.sleep(0.1)
    with path.open("a") as f:
        f.write("2026-01-01 00:00:01,000 INFO 1 x [r1]: new\n2026-01-01 00:00:01,000 INFO")
    await asyncio.wait_for(task, 2)
    assert got == ["new"]  # the old line was there before; the half line waits
    with path.open("a") as f:
        f.write(" 1 x [r2]: finished\n")
    again: list[str] = []
    async for lines, _ in follow(tmp_path, "dep", LogFilter(), 0.5, resume=offsets):
        again.extend(x["message"] for x in lines)
    assert again == ["finished"]
    logging.shutdown()


def test_svg_escapes_and_prints_numbers() -> None:
    evil = "<script>alert(1)</script>"
    cm = str(svg.confusion_matrix([evil, "b"], [[5, 1], [2, 7]]))
    assert evil not in cm and "&lt;script&gt;" in cm
    assert ">5<" in cm and ">7<" in cm
    chart = str(svg.line_chart({evil: [(0, 1), (1, 2)], "v2": [(0, 3), (1, 1)]}, evil, "x"))
    assert evil not in chart and 'stroke-dasharray="6 3"' in chart  # told apart without colour
    dag = str(svg.dag([{"name": "a", "state": "SUCCEEDED"},
                       {"name": "b", "state": "FAILED", "after": ["a"]}]))
    assert ">failed<" in dag and ">succeeded<" in dag
