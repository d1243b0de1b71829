"""The feature-service oracle of ``tests/unit/online/test_service_read_oracle.py`` against
every online store: a read of several views at once answers what reading each view alone
answers and what the brute-force oracle says (newest wins, per-view TTL, statuses), after
writes in any order, older ones included. Redis keeps no per-service vectors (an entity's
views share one hash, read with one HMGET); SQLite is checked with and without them."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.integration.online.conftest import StoreFactory
from tests.unit.online.test_service_read_oracle import (
    BATCHES,
    PROBES,
    SNAP,
    VIEWS,
    apply_writes,
    check_store,
)

from tureen.online.keys import encoder_for
from tureen.online.packed import VectorRead
from tureen.online.protocol import KeepsVectors
from tureen.online.vectors import sync


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(BATCHES, PROBES, st.booleans())
def test_service_reads_match_single_view_reads_and_the_oracle(
        store_factory: StoreFactory, batches: list[list[tuple[Any, ...]]], probes: list[int],
        vector: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = store_factory(Path(tmp), f"svcread_{uuid.uuid4().hex[:12]}")
        try:
            if vector and isinstance(store, KeepsVectors):
                sync(store, SNAP)
            check_store(store, apply_writes(store, batches), probes)
        finally:
            store.delete_views(list(VIEWS.values()))
            store.close()



@pytest.mark.parametrize("expired", [False, True])
def test_a_service_read_decoded_at_once_answers_as_the_views_do(
        store_factory: StoreFactory, tmp_path: Path, expired: bool) -> None:
    """Every key holds every view of a numbers-only service: SQLite (its vector) and Redis
    (one HMGET per entity) hand the rows over in one block, decoded for every view at
    once; the answer is still the oracle's (with a row past its view's TTL: view by view)."""
    store = store_factory(tmp_path, f"svcread_{uuid.uuid4().hex[:12]}")
    try:
        if isinstance(store, KeepsVectors):
            sync(store, SNAP)
        writes = [(v, a, 1, 0, a) for v in ("a", "b") for a in range(60)]
        if expired:  # the only rows of a:5 and b:6 are past their views' TTLs (5h, 10h)
            writes = [w for w in writes if w[:2] not in (("a", 5), ("b", 6))]
            writes += [("a", 5, 6, 0, 5), ("b", 6, 11, 0, 6)]
        oracle = apply_writes(store, [writes])
        probes = [*range(60), 3, 3]
        enc = encoder_for(VIEWS["a"].key_fields)
        keys = [enc.encode_one(a) for a in probes]
        assert isinstance(store.read([(VIEWS["a"], keys), (VIEWS["b"], keys)]), VectorRead)
        check_store(store, oracle, probes)
        if expired:
            assert ("a", 5) in oracle and oracle[("a", 5)][0] == -6
    finally:
        store.delete_views(list(VIEWS.values()))
        store.close()
