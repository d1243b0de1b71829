"""Per-service vectors: which feature services get one, and keeping the store's in step.

A ``FeatureService(..., online_vector=True)`` asks for one. Its vector holds, per entity, the
stored row of every view a read of the service reads (the views it lists and those its
on-demand views read), so reading the service is one lookup per entity instead of one per
view. Values, event timestamps, per-view TTL and statuses are decided on read exactly as
for the views read one by one: the vector holds the same bytes as the views, written in the
same transaction (``KeepsVectors``).

It does not apply, and the service is read view by view with the same answer, when: the
service reads fewer than two stored views, or views keyed by different join keys; the
online store keeps no vectors (Redis: an entity's views already live in one hash and are
read with one HMGET per entity); a read asks for views no one vector holds.

``sync`` makes the store keep exactly the vectors the registry asks for; ``tureen apply``
and materialization call it (a service's vector is built from what its views hold).
"""

from __future__ import annotations

import logging

from tureen.errors import TureenError
from tureen.feature_refs import resolve
from tureen.online.protocol import KeepsVectors, OnlineStore, VectorSpec
from tureen.registry.snapshot import RegistrySnapshot

log = logging.getLogger(__name__)


def vector_specs(snapshot: RegistrySnapshot) -> list[VectorSpec]:
    """The vectors ``snapshot``'s services ask for and can have."""
    specs: list[VectorSpec] = []
    for service in snapshot.feature_services.values():
        if not service.online_vector:
            continue
        try:
            views = tuple(r.view for r in resolve(snapshot, service).reads)
        except TureenError as exc:  # an invalid service is reported where it is read
            log.warning("feature service %r: no online vector (%s)", service.name, exc)
            continue
        keys = {tuple((f.name, f.dtype.name) for f in v.key_fields) for v in views}
        if len(views) < 2 or len(keys) != 1:
            log.info("feature service %r: no online vector (it reads %d stored view(s) keyed "
                     "by %d set(s) of join keys); it is read view by view",
                     service.name, len(views), len(keys))
            continue
        specs.append(VectorSpec(service.name, views))
    return specs


def asks_for_vectors(snapshot: RegistrySnapshot) -> bool:
    return any(s.online_vector for s in snapshot.feature_services.values())


def sync(store: OnlineStore, snapshot: RegistrySnapshot) -> list[VectorSpec]:
    """Make ``store`` keep the vectors of ``snapshot`` (nothing for a store that keeps
    none); the specs kept."""
    if not isinstance(store, KeepsVectors):
        return []
    specs = vector_specs(snapshot)
    store.sync_vectors(specs)
    return specs
