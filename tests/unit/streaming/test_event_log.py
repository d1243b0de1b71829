"""Offline log parts: atomic writes with the watermark state, compaction that keeps one row
per event, and message decoding (JSON, Avro, Confluent framing)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pytest

from tureen import FileSource, KafkaSource
from tureen.definitions import AvroFormat
from tureen.streaming.decode import BadMessageError, decoder_for
from tureen.streaming.event_log import EVENT_ID, LogFolder, compact, merge_states


def log(tmp_path: Path) -> LogFolder:
    return LogFolder.of(FileSource("data/log/"), tmp_path)


def test_parts_carry_state_and_compaction_keeps_one_row_per_event(tmp_path: Path) -> None:
    lf = log(tmp_path)
    for i in range(5):
        ids = [f"0:{j}" for j in range(i * 10, i * 10 + 15)]  # 5 rows overlap the next part
        lf.write(pa.table({EVENT_ID: ids, "x": list(range(15))}),
                 {"newest": {"0": i}, "watermark": i, "closed": {}, "positions": {"0": i}})
    assert len(lf.parts()) == 5
    assert not any(p.name.startswith(".") for p in (tmp_path / "data" / "log").iterdir())
    before, after = compact(lf, [EVENT_ID], min_files=3, target_rows=1000)
    assert (before, after) == (5, 1)
    table = lf.read()
    assert table is not None
    assert sorted(table.column(EVENT_ID).to_pylist()) == sorted({f"0:{j}" for j in range(55)})
    assert merge_states(lf.states())["positions"] == {"0": 4}


def test_big_parts_are_left_alone(tmp_path: Path) -> None:
    lf = log(tmp_path)
    lf.write(pa.table({EVENT_ID: [str(i) for i in range(100)]}))
    for i in range(3):
        lf.write(pa.table({EVENT_ID: [f"s{i}"]}))
    assert compact(lf, [EVENT_ID], min_files=3, target_rows=100) == (4, 2)
    assert compact(lf, [EVENT_ID], min_files=3, target_rows=100) == (2, 2)


def test_json_and_avro_messages() -> None:
    import fastavro

    src = KafkaSource(name="s", topic="t", batch_source=FileSource("data/s/"))
    dec = decoder_for(src)
    assert dec(b'{"a": 1}') == {"a": 1}
    for bad, why in ((b"{", "JSON"), (b"[1]", "object"), (None, "tombstone")):
        with pytest.raises(BadMessageError, match=why):
            dec(bad)
    schema = {"type": "record", "name": "tx", "fields": [{"name": "amount", "type": "double"},
                                                          {"name": "ts", "type": "string"}]}
    avro = decoder_for(KafkaSource(name="s", topic="t", batch_source=FileSource("data/s/"),
                                   message_format=AvroFormat(json.dumps(schema))))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"amount": 2.5, "ts": "x"})
    assert avro(buf.getvalue()) == {"amount": 2.5, "ts": "x"}
    with pytest.raises(BadMessageError, match="Avro"):
        avro(b"\x01")
    framed = decoder_for(KafkaSource(
        name="s", topic="t", batch_source=FileSource("data/s/"),
        message_format=AvroFormat(json.dumps(schema), confluent_framing=True)))
    assert framed(b"\x00\x00\x00\x00\x07" + buf.getvalue()) == {"amount": 2.5, "ts": "x"}
    with pytest.raises(BadMessageError, match="wire format"):
        framed(b"\x05\x00\x00\x00\x07" + buf.getvalue())
