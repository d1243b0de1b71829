"""The whole OnlineStore contract suite, run against a real local 3-node Redis Cluster.

The tests are the online store's own (``tests/integration/online/test_store_contract.py``),
imported so pytest runs them here with this folder's ``store`` / ``store_factory`` fixtures.
"""

from __future__ import annotations

import pytest
from tests.integration.online.test_store_contract import *  # noqa: F403

pytestmark = [pytest.mark.services, pytest.mark.slow]
