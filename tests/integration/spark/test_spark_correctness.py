"""The offline engineer's point-in-time and source suites, run on the Spark engine.

Every test here is imported from tests/unit/offline and runs against this folder's
``engine`` fixture (a SparkEngine on one shared local session). Left out: the fsspec
``memory://`` source (Spark reads Hadoop filesystems, not fsspec's in-process memory) and
the DuckDB-only batching test.
"""

from __future__ import annotations

import pytest
from tests.unit.offline.test_entity_free import (  # noqa: F401
    test_entity_free_requests_that_cannot_work_say_why,
    test_views_keyed_by_fewer_keys_are_looked_up_as_of_each_row,
)
from tests.unit.offline.test_pit_cases import (  # noqa: F401
    test_both_ttl_bounds_are_inclusive,
    test_duplicate_entity_rows_are_all_kept_in_order,
    test_entity_row_before_any_data_is_null,
    test_equal_event_time_takes_the_newest_created,
    test_field_mapping_renames_source_columns,
    test_input_order_is_kept_for_many_shuffled_rows,
    test_microseconds_are_kept,
    test_past_the_ttl_is_null_even_if_older_rows_exist,
    test_timestamps_naive_aware_and_mixed_offsets_mean_the_same_instant,
    test_two_views_on_different_join_keys,
)
from tests.unit.offline.test_sources import (  # noqa: F401
    test_append_to_a_single_file_source_is_refused,
    test_append_writes_a_new_file_that_reads_back,
    test_csv_source_with_typed_columns,
    test_glob_source,
    test_hive_partitioned_folder_source,
    test_latest_rows_per_entity_in_window,
    test_missing_source_column_names_the_view,
    test_missing_source_file_is_a_clear_error,
)

pytestmark = pytest.mark.slow
