"""Sources are cited from what a reader has: the ASFF paper, YOLOv3 / Darknet, or the repository's own docs.

A "SPEC section N" points into a document that is not in the repository, so no shipped file may name it.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("yolo_asff", "configs", "tools", "scripts")
OUTSIDE_DOCUMENT = re.compile(r"\bSPEC\b")


def _text_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:  # pictures and other binary files cite nothing
                continue


def test_no_shipped_file_cites_a_document_outside_the_repository():
    found = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
             for folder in SHIPPED for path, text in _text_files(REPO / folder)
             for number, line in enumerate(text.splitlines(), 1) if OUTSIDE_DOCUMENT.search(line)]
    assert not found, ("cite the ASFF paper (section, equation), YOLOv3 / Darknet, or docs/ and the README "
                       "instead of SPEC:\n" + "\n".join(found))
