"""Which versions of a model on disk are served: ``latest:N``, ``all`` or ``specific:1,3``."""

from __future__ import annotations

from dataclasses import dataclass

from tureen.errors import InvalidRequestError


def version_key(v: str) -> tuple[int, int | str]:
    """Numeric versions sort numerically and after non-numeric ones."""
    return (1, int(v)) if v.isdigit() else (0, v)


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"
    latest: int = 1
    versions: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        text = text.strip()
        if text == "all":
            return cls("all")
        kind, _, arg = text.partition(":")
        if kind == "latest":
            if not arg:
                return cls("latest", 1)
            if arg.isdigit() and int(arg) > 0:
                return cls("latest", int(arg))
        if kind == "specific" and arg:
            return cls("specific", versions=tuple(v.strip() for v in arg.split(",") if v.strip()))
        raise InvalidRequestError(
            f"version policy {text!r} is not understood; use 'latest', 'latest:N', 'all' or "
            "'specific:1,3'."
        )

    def select(self, available: list[str]) -> list[str]:
        ordered = sorted(available, key=version_key)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.latest:]

    def __str__(self) -> str:
        if self.kind == "specific":
            return "specific:" + ",".join(self.versions)
        return "all" if self.kind == "all" else f"latest:{self.latest}"
