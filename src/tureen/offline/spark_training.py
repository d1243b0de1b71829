"""A training set built inside Spark: final column names, and on-demand views run on the
executors over Arrow batches with the same ``transform`` serving uses (used by
``SparkEngine.historical_features_to_parquet``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as sf
from pyspark.sql import types as st

from tureen.feature_refs import FeaturePlan
from tureen.offline.spark_types import arrow_schema, quote, spark_type


def assemble(joined: DataFrame, plan: FeaturePlan, entity_columns: list[str]) -> DataFrame:
    """Entity columns, then each requested feature under its final name; on-demand views run
    on the executors over Arrow batches with the same ``transform`` serving uses."""
    full = plan.full_feature_names
    if not plan.on_demand:
        return joined.select(
            *[quote(c) for c in entity_columns],
            *[sf.col(quote(f"{r.view}__{r.feature}")).alias(r.output_name(full))
              for r in plan.refs],
        )
    fields = [joined.schema[c] for c in entity_columns]
    fields += [st.StructField(r.output_name(full), spark_type(r.dtype)) for r in plan.refs]
    out_schema = st.StructType(fields)
    spec = BatchSpec(
        odfvs=[o.to_dict() for o in plan.on_demand],
        reads={r.view.name: [f.name for f in r.features] for r in plan.reads},
        refs=[(r.view, r.feature, r.on_demand) for r in plan.refs],
        entity_columns=entity_columns,
        arrow_schema=arrow_schema(out_schema),
    )
    inputs = [*entity_columns, *[f"{v}__{f}" for v, fs in spec.reads.items() for f in fs]]
    with warnings.catch_warnings():
        # PySpark >= 4.1 warns that pandas 3 is not fully supported; this path hands
        # on-demand views pandas frames built from Arrow, which pandas 3 handles.
        warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas",
                                FutureWarning)
        return joined.select(*[quote(c) for c in inputs]).mapInArrow(spec.run, out_schema)


@dataclass
class BatchSpec:
    """Everything an executor needs to finish batches: plain data, so it pickles anywhere
    tureen is installed (on-demand views travel as their registry dicts)."""

    odfvs: list[dict[str, Any]]
    reads: dict[str, list[str]]
    refs: list[tuple[str, str, bool]]
    entity_columns: list[str]
    arrow_schema: pa.Schema

    def run(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from tureen.definitions import OnDemandFeatureView

        odfvs = [OnDemandFeatureView.from_dict(d) for d in self.odfvs]
        for b in batches:
            computed: dict[tuple[str, str], pa.Array] = {}
            for odfv in odfvs:
                inputs: dict[str, Any] = {}
                for vname, feats in odfv.input_views():
                    for fname in feats or self.reads[vname]:
                        inputs[fname] = b.column(f"{vname}__{fname}")
                for source in odfv.request_sources:
                    for f in source.schema:
                        inputs[f.name] = b.column(f.name)
                frame = (pa.table(inputs).to_pandas() if inputs
                         else pd.DataFrame(index=range(b.num_rows)))
                result = odfv.transform(frame)
                for f in odfv.features:
                    computed[(odfv.name, f.name)] = pa.array(
                        result[f.name], type=f.dtype.arrow, from_pandas=True)
            arrays = [b.column(c) for c in self.entity_columns] + [
                computed[(v, f)] if od else b.column(f"{v}__{f}") for v, f, od in self.refs
            ]
            yield pa.RecordBatch.from_arrays(
                [a.cast(t.type) for a, t in zip(arrays, self.arrow_schema, strict=True)],
                schema=self.arrow_schema,
            )
