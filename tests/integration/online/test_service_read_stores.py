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

