"""The seam between the registry service and where the registry is stored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol


class RegistryStore(Protocol):
    """Stores one project's registry document with optimistic concurrency.

    ``save`` succeeds only if the stored version still equals ``expected_version`` (0 when
    nothing is stored yet); otherwise it raises ConflictError and stores nothing. The document
    written carries ``version == expected_version + 1``. Nothing is ever half-written.
    """

    def load(self) -> dict[str, Any] | None:
        """The stored document, or None if nothing was applied yet.
        Raises RegistryCorruptError (never resets) when it cannot be decoded."""
        ...

    def save(self, document: Mapping[str, Any], expected_version: int, summary: str) -> None: ...

    def history(self) -> list[dict[str, Any]]:
        """One record per save, oldest first: {version, at, summary}."""
        ...

    def delete(self) -> None: ...

    def describe(self) -> str:
        """Where the registry lives, for messages (a path or a URL without password)."""
        ...
