"""Resolve feature references (``"view:feature"`` strings or a FeatureService) into a plan.

The plan keeps the requested order (every response follows it), lists the stored views to
read (including the inputs of on-demand views, which are read but not returned unless
requested), the on-demand views to run, the request-time fields and the join keys needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tureen.definitions import FeatureService, FeatureView, Field, OnDemandFeatureView
from tureen.errors import InvalidRequestError, NotFoundError, suggest
from tureen.registry.snapshot import RegistrySnapshot
from tureen.types import DType


@dataclass(frozen=True)
class FeatureRef:
    view: str
    feature: str
    dtype: DType
    on_demand: bool = False

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.feature}"

    def output_name(self, full_feature_names: bool) -> str:
        return f"{self.view}__{self.feature}" if full_feature_names else self.feature


@dataclass(frozen=True)
class ViewRead:
    """One stored view and the features to read from it (requested or needed by an ODFV)."""

    view: FeatureView
    features: tuple[Field, ...]


@dataclass(frozen=True)
class FeaturePlan:
    refs: tuple[FeatureRef, ...]
    reads: tuple[ViewRead, ...]
    on_demand: tuple[OnDemandFeatureView, ...]
    request_fields: tuple[Field, ...]
    join_keys: tuple[str, ...]
    full_feature_names: bool

    @property
    def output_names(self) -> list[str]:
        return [r.output_name(self.full_feature_names) for r in self.refs]

    @property
    def output_fields(self) -> list[Field]:
        return [Field(r.output_name(self.full_feature_names), r.dtype) for r in self.refs]

    @property
    def key_fields(self) -> list[Field]:
        """The join-key fields (name and dtype) the plan needs, in ``join_keys`` order."""
        found: dict[str, Field] = {}
        for read in self.reads:
            for f in read.view.key_fields:
                found.setdefault(f.name, f)
        return [found[k] for k in self.join_keys]


def _parse_ref(ref: str) -> tuple[str, str]:
    if not isinstance(ref, str) or ref.count(":") != 1 or ref.startswith(":") or ref.endswith(":"):
        raise InvalidRequestError(
            f"feature reference {ref!r} is malformed: write 'view_name:feature_name'."
        )
    view, feat = ref.split(":")
    return view, feat


def _all_refs(snapshot: RegistrySnapshot) -> list[str]:
    out = [f"{v.name}:{f}" for v in snapshot.feature_views.values() for f in v.feature_names]
    out += [f"{v.name}:{f}" for v in snapshot.on_demand_views.values() for f in v.feature_names]
    return out


def resolve(
    snapshot: RegistrySnapshot,
    features: Sequence[str] | FeatureService | str,
    full_feature_names: bool = False,
) -> FeaturePlan:
    """Resolve ``features`` against ``snapshot``; raises NotFoundError with suggestions."""
    if isinstance(features, str):
        features = snapshot.feature_service(features)
    pairs: list[tuple[str, str]] = []
    if isinstance(features, FeatureService):
        for view_name, selected in features.projections():
            view = snapshot.any_view(view_name)
            for f in selected if selected is not None else view.feature_names:
                pairs.append((view_name, f))
    else:
        if not features:
            raise InvalidRequestError(
                "no features requested: pass feature references or a service."
            )
        pairs = [_parse_ref(r) for r in features]

    refs: list[FeatureRef] = []
    seen: set[tuple[str, str]] = set()
    for view_name, feat in pairs:
        if (view_name, feat) in seen:
            raise InvalidRequestError(f"feature {view_name}:{feat} is requested twice.")
        seen.add((view_name, feat))
        if view_name in snapshot.feature_views:
            fv = snapshot.feature_views[view_name]
            names = fv.feature_names
            dtype = next((f.dtype for f in fv.features if f.name == feat), None)
            on_demand = False
        elif view_name in snapshot.on_demand_views:
            od = snapshot.on_demand_views[view_name]
            names = od.feature_names
            dtype = next((f.dtype for f in od.features if f.name == feat), None)
            on_demand = True
        else:
            known = list(snapshot.feature_views) + list(snapshot.on_demand_views)
            raise NotFoundError(
                f"unknown feature view {view_name!r} in {view_name}:{feat}."
                f"{suggest(view_name, known)} Known views: {', '.join(sorted(known)) or 'none'}.",
                kind="feature view",
            )
        if dtype is None:
            hint = suggest(f"{view_name}:{feat}", _all_refs(snapshot))
            raise NotFoundError(
                f"unknown feature {view_name}:{feat}.{hint} View {view_name!r} has: "
                f"{', '.join(names)}.", kind="feature"
            )
        refs.append(FeatureRef(view_name, feat, dtype, on_demand))

    out_names = [r.output_name(full_feature_names) for r in refs]
    dupes = sorted({n for n in out_names if out_names.count(n) > 1})
    if dupes:
        raise InvalidRequestError(
            f"feature names {dupes} come from more than one view; pass full_feature_names=True "
            "to name them 'view__feature'."
        )

    # Stored views to read: requested features plus the inputs of requested on-demand views.
    wanted: dict[str, dict[str, Field]] = {}

    def want(view_name: str, feats: Sequence[str] | None) -> None:
        fv = snapshot.feature_view(view_name)
        slot = wanted.setdefault(view_name, {})
        fields = fv.features if feats is None else tuple(fv.feature(n) for n in feats)
        for fld in fields:
            slot.setdefault(fld.name, fld)

    odfvs: list[OnDemandFeatureView] = []
    request_fields: dict[str, Field] = {}
    for r in refs:
        if not r.on_demand:
            want(r.view, [r.feature])
        elif all(o.name != r.view for o in odfvs):
            od = snapshot.on_demand_views[r.view]
            odfvs.append(od)
            for vname, feats in od.input_views():
                want(vname, feats)
            for rs in od.request_sources:
                for rf in rs.schema:
                    request_fields.setdefault(rf.name, rf)

    reads = tuple(
        ViewRead(snapshot.feature_views[v], tuple(fs.values())) for v, fs in wanted.items()
    )
    join_keys: dict[str, None] = {}
    for rd in reads:
        for k in rd.view.join_keys:
            join_keys.setdefault(k, None)
    return FeaturePlan(
        refs=tuple(refs),
        reads=reads,
        on_demand=tuple(odfvs),
        request_fields=tuple(request_fields.values()),
        join_keys=tuple(join_keys),
        full_feature_names=full_feature_names,
    )
