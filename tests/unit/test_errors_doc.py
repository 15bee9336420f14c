"""docs/errors.md documents exactly the codes of the taxonomy in engine/errors/taxonomy.py."""

from __future__ import annotations

import re
from pathlib import Path

from aura.engine.errors.taxonomy import TAXONOMY

DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
#: a code heading: ### `Name` or ### `Name:{PARAM}`
HEADING = re.compile(r"^### `([A-Za-z]+)(?::\{[A-Z]+\})?`\s*$", re.MULTILINE)


def documented_codes() -> list[str]:
    return HEADING.findall(DOC.read_text(encoding="utf-8"))


def test_every_taxonomy_code_is_documented() -> None:
    missing = sorted(set(TAXONOMY) - set(documented_codes()))
    assert missing == [], f"add these codes to docs/errors.md: {missing}"


def test_every_documented_code_is_in_the_taxonomy() -> None:
    unknown = sorted(set(documented_codes()) - set(TAXONOMY))
    assert unknown == [], (
        f"docs/errors.md documents codes engine/errors/taxonomy.py lacks: {unknown}"
    )


def test_no_code_is_documented_twice() -> None:
    codes = documented_codes()
    assert len(codes) == len(set(codes))
