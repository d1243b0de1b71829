"""A transformer's remote hops name the server that failed (issue 10 papercut)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tureen.errors import BackendUnavailableError
from tureen.transformer.features import RemoteFeatures


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens there any more


def test_a_feature_server_that_is_down_is_named_not_the_predictor() -> None:
    remote = RemoteFeatures(f"http://127.0.0.1:{closed_port()}", "svc", None, timeout=1,
                            retries=1, backoff=0, max_connections=1)

    async def fetch() -> None:
        try:
            await remote.fetch({"account_id": [1]})
        finally:
            await remote.close()

    with pytest.raises(BackendUnavailableError) as err:
        asyncio.run(fetch())
    assert "feature server" in str(err.value) and "predictor" not in str(err.value)
