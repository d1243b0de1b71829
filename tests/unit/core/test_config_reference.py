"""The configuration reference lists exactly the keys the configuration models accept.

README.md's "Configuration reference" table has one row per section (and backend ``type``);
its last column names every accepted key in backticks (text in parentheses is commentary:
defaults and examples). docs/feature-serving.md's "Transformer configuration reference"
table has one row per transformer key (nested keys dotted: ``missing.policy``). A key added
to a model without a line in the reference (or documented but not accepted) fails here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tureen.backend_options import OPTIONS
from tureen.config import RepoConfig, ServingConfig, _model_in
from tureen.streaming.config import StreamingConfig
from tureen.transformer.config import TransformerConfig

ROOT = Path(__file__).resolve().parents[3]
_TICKED = re.compile(r"`([^`]+)`")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:end if end > 0 else None]


def _rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|\s*-", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def _keys(cell: str) -> set[str]:
    without_comments = re.sub(r"\([^)]*\)", "", cell)
    return set(_TICKED.findall(without_comments))


def _first_ticked(cell: str) -> str:
    m = _TICKED.search(cell)
    return m.group(1) if m else cell.strip()


def readme_reference() -> dict[tuple[str, str], set[str]]:
    text = _section((ROOT / "README.md").read_text(), "## Configuration reference")
    out: dict[tuple[str, str], set[str]] = {}
    for row in _rows(text):
        section, kind, options = row[0], row[1], row[-1]
        out[(_first_ticked(section), _first_ticked(kind))] = _keys(options)
    return out


def flat_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, info in model.model_fields.items():
        inner: Any = _model_in(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            out |= flat_fields(inner, f"{prefix}{name}.")
        else:
            out.add(prefix + name)
    return out


def test_every_backend_option_is_in_the_readme_reference() -> None:
    ref = readme_reference()
    for (section, kind), model in OPTIONS.items():
        assert (section, kind) in ref, f"README reference has no row for {section} {kind}"
        assert ref[(section, kind)] == set(model.model_fields), (section, kind)


def test_every_section_is_in_the_readme_reference() -> None:
    ref = readme_reference()
    assert {s for s, _ in ref} == set(RepoConfig.model_fields)
    assert ref[("serving", "—")] == set(ServingConfig.model_fields)
    assert ref[("streaming", "—")] == set(StreamingConfig.model_fields)


def test_every_transformer_key_is_in_the_transformer_reference() -> None:
    text = _section((ROOT / "docs" / "feature-serving.md").read_text(),
                    "## Transformer configuration reference")
    documented = {_first_ticked(row[0]) for row in _rows(text) if row and "`" in row[0]}
    assert documented == flat_fields(TransformerConfig)


def test_every_security_key_is_in_the_security_reference() -> None:
    text = _section((ROOT / "docs" / "security.md").read_text(),
                    "## Security configuration reference")
    documented = {_first_ticked(row[0]) for row in _rows(text) if row and "`" in row[0]}
    expected = {k for k in flat_fields(ServingConfig)
                if k.split(".")[0] in ("auth", "tls", "audit")}
    assert documented == expected
