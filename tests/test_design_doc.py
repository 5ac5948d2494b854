"""docs/DESIGN.md stays true: every path it names exists, and every name it gives right after a path is defined there."""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "DESIGN.md"
# `path` optionally followed by ` `Name`` or ` (`Name`)`: the name must be defined in that file.
PATH_AND_NAME = re.compile(r"`((?:yolo_asff|tests|tools|docs|configs|scripts)/[^`\s]*)`(?:\s+\(?`([A-Za-z_]\w*)`)?")


def _named_paths():
    return PATH_AND_NAME.findall(DESIGN.read_text(encoding="utf-8"))


def _exists(path: str) -> bool:
    return any(REPO.glob(path)) if "*" in path else (REPO / path).exists()


def _defines(path: str, name: str) -> bool:
    text = (REPO / path).read_text(encoding="utf-8")
    return re.search(rf"^\s*(?:def|class)\s+{name}\b|^\s*{name}\s*[:=]", text, re.MULTILINE) is not None


def test_the_design_doc_names_real_paths():
    named = _named_paths()
    assert len(named) > 30, "the pattern stopped finding the doc's paths"
    missing = sorted({path for path, _ in named if not _exists(path)})
    assert not missing, f"docs/DESIGN.md names paths that do not exist: {missing}"


def test_the_names_after_a_path_are_defined_there():
    wrong = sorted({f"{path}: {name}" for path, name in _named_paths()
                    if name and path.endswith(".py") and _exists(path) and not _defines(path, name)})
    assert not wrong, f"docs/DESIGN.md gives names their files do not define: {wrong}"


def test_each_error_in_the_table_is_defined_where_it_says():
    rows = re.findall(r"^\| (`\w+`(?:, `\w+`)*) \|.*\| `([^`]+\.py)` \|$", DESIGN.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(rows) >= 10, "the pattern stopped finding the errors table"
    wrong = [f"{path}: {name}" for names, path in rows for name in re.findall(r"`(\w+)`", names)
             if not _defines(path, name)]
    assert not wrong, f"docs/DESIGN.md's errors table places errors where they are not defined: {wrong}"


def test_the_checks_can_fail():
    assert not _exists("yolo_asff/models/no_such_module.py")
    assert not _defines("yolo_asff/models/build.py", "no_such_function")
    assert _defines("yolo_asff/models/build.py", "build_model")
