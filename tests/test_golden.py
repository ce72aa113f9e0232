"""Golden results: pinned reference runs. A change in any number must be deliberate (see tests/golden/cases.py)."""

import json
import re
from pathlib import Path

import pytest

from tests.golden.cases import EXPECTED, NUMBERS_VERSION, compute

ROOT = Path(__file__).resolve().parent.parent


def _flatten(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flatten(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def test_golden_results_unchanged():
    expected = json.loads(EXPECTED.read_text())
    assert expected["numbers_version"] == NUMBERS_VERSION, "regenerate expected.json after bumping NUMBERS_VERSION"
    got = dict(_flatten(compute()))
    want = dict(_flatten(expected))
    assert got.keys() == want.keys()
    moved = {k: (want[k], got[k]) for k in want if k != "numbers_version" and got[k] != pytest.approx(want[k], rel=1e-9, abs=1e-9)}
    assert not moved, f"numbers moved (update deliberately, see tests/golden/cases.py): {moved}"


def test_changelog_records_the_numbers_version():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"numbers version {re.escape(NUMBERS_VERSION)}\b", text), \
        f"CHANGELOG.md has no entry for numbers version {NUMBERS_VERSION}"
