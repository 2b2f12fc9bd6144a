"""tools/planted.py (`make planted`) stays usable: every plant still applies to today's code exactly once, turns
it into valid code that differs, and names test files that exist. Running the plants is `make planted` (minutes),
not part of the suite."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("planted", ROOT / "tools" / "planted.py")
planted = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("planted", planted)  # dataclasses look their module up by name
_spec.loader.exec_module(planted)


@pytest.mark.parametrize("plant", planted.PLANTS, ids=lambda p: p.id)
def test_plant_applies_once_and_names_real_tests(plant):
    text = (ROOT / plant.file).read_text()
    assert text.count(plant.old) == 1, f"{plant.id} is stale: update its text in tools/planted.py"
    changed = text.replace(plant.old, plant.new)
    assert changed != text
    if plant.file.endswith(".py"):
        compile(changed, plant.file, "exec")
    for t in plant.tests:
        path, _, name = t.partition("::")
        assert (ROOT / path).is_file(), t
        if name:
            assert f"def {name}(" in (ROOT / path).read_text(), t


def test_plant_ids_are_unique_and_the_issue_thirteen_are_there():
    ids = [p.id for p in planted.PLANTS]
    assert len(ids) == len(set(ids))
    assert sum(p.from_issue for p in planted.PLANTS) == 13
