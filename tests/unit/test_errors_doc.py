"""docs/errors.md documents exactly the codes of the taxonomy in engine/errors/taxonomy.py, each
with the taxonomy's remediation."""

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


#: a code's section: its heading and the text up to the next heading
SECTION = re.compile(r"^### `([A-Za-z]+)[^\n]*\n(.*?)(?=^#|\Z)", re.MULTILINE | re.DOTALL)
#: a section's remediation: the list item `- Remediation: ...`, up to the next item
REMEDIATION = re.compile(r"^- Remediation: (.*?)(?=^- |\Z)", re.MULTILINE | re.DOTALL)
#: a code span the taxonomy's plain text quotes, 'apt-get install ffmpeg' (an apostrophe
#: follows a letter, so "the page's Settings" holds none)
QUOTED = re.compile(r"(?<!\w)'([^']*)'(?!\w)")


def plain(text: str) -> str:
    """`text` as compared: code spans unmarked (markdown backticks, the taxonomy's quotes),
    whitespace collapsed, the first letter a capital (the doc's item continues a label)."""
    text = " ".join(QUOTED.sub(r"\1", text.replace("`", "")).split())
    return text[:1].upper() + text[1:]


def documented_remediations() -> dict[str, list[str]]:
    return {
        code: [plain(found) for found in REMEDIATION.findall(body)]
        for code, body in SECTION.findall(DOC.read_text(encoding="utf-8"))
    }


def test_every_documented_remediation_is_the_taxonomys() -> None:
    documented = documented_remediations()
    assert set(documented) == set(TAXONOMY)
    wrong = {
        code: {"docs/errors.md": found, "taxonomy": plain(TAXONOMY[code].remediation)}
        for code, found in documented.items()
        if found != [plain(TAXONOMY[code].remediation)]
    }
    assert wrong == {}, "docs/errors.md and engine/errors/taxonomy.py differ"


def test_plain_unmarks_code_spans_and_keeps_apostrophes() -> None:
    assert (
        plain("install `ffmpeg`\n  (the page's\tSettings)")
        == "Install ffmpeg (the page's Settings)"
    )
    assert plain("Set it to 'auto' or 'x264', the server's 'A: B <t>'.") == (
        "Set it to auto or x264, the server's A: B <t>."
    )
