"""Detect objects in pictures or video and write annotated copies.

``yolo-asff demo`` run from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's package, installed or not
from yolo_asff.cli import launch  # noqa: E402

main = launch("demo", __name__)
