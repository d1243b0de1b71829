"""Field and Entity: the named, typed columns every definition is built from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tureen.errors import InvalidRequestError
from tureen.types import DType, Int64, dtype_from_name


def check_name(kind: str, name: object) -> str:
    plain = isinstance(name, str) and name.replace("_", "a").replace("-", "a").isalnum()
    if not isinstance(name, str) or not plain:
        raise InvalidRequestError(
            f"{kind} name {name!r} is invalid: use letters, digits, '_' or '-' (not empty)."
        )
    return name


@dataclass(frozen=True)
class Field:
    """A named, typed column of a feature view, request source or on-demand view."""

    name: str
    dtype: DType
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name("Field", self.name)
        if not isinstance(self.dtype, DType):
            raise InvalidRequestError(
                f"Field {self.name!r}: dtype must be a tureen type such as Float32 or "
                f"Array(Int64), got {self.dtype!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "description": self.description,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Field:
        return cls(d["name"], dtype_from_name(d["dtype"]), d.get("description", ""),
                   dict(d.get("tags", {})))


@dataclass(frozen=True)
class Entity:
    """A thing features describe (an account, a driver), identified by one or more join keys."""

    name: str
    join_keys: Sequence[str] = ()
    dtype: DType | Mapping[str, DType] = Int64
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    owner: str = ""

    def __post_init__(self) -> None:
        check_name("Entity", self.name)
        keys = tuple(self.join_keys) if self.join_keys else (self.name,)
        if isinstance(self.join_keys, str):
            keys = (self.join_keys,)
        for k in keys:
            check_name(f"Entity {self.name!r} join key", k)
        if len(set(keys)) != len(keys):
            raise InvalidRequestError(f"Entity {self.name!r} lists a join key twice: {keys}.")
        object.__setattr__(self, "join_keys", keys)
        if isinstance(self.dtype, Mapping):
            missing = [k for k in keys if k not in self.dtype]
            if missing:
                raise InvalidRequestError(
                    f"Entity {self.name!r}: dtype mapping has no type for join keys {missing}."
                )

    def key_dtype(self, key: str) -> DType:
        return self.dtype[key] if isinstance(self.dtype, Mapping) else self.dtype

    @property
    def key_fields(self) -> tuple[Field, ...]:
        return tuple(Field(k, self.key_dtype(k)) for k in self.join_keys)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "join_keys": list(self.join_keys),
            # one type for every key, or None when ``dtype`` maps keys to types (``dtypes``)
            "dtype": None if isinstance(self.dtype, Mapping) else self.dtype.name,
            "dtypes": {k: self.key_dtype(k).name for k in self.join_keys},
            "description": self.description,
            "tags": dict(self.tags),
            "owner": self.owner,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entity:
        dtypes = {k: dtype_from_name(v) for k, v in d["dtypes"].items()}
        dtype: DType | dict[str, DType] = dtypes
        if d.get("dtype") is not None:
            dtype = dtype_from_name(d["dtype"])
        elif "dtype" not in d and len(set(dtypes.values())) == 1:
            # stored before "dtype" was: one type for every key was almost surely declared so
            dtype = next(iter(dtypes.values()))
        return cls(d["name"], tuple(d["join_keys"]), dtype, d.get("description", ""),
                   dict(d.get("tags", {})), d.get("owner", ""))
