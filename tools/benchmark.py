"""Benchmarks that print numbers (never timed tests).

``yolo-asff benchmark`` run from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's package, installed or not
from yolo_asff.cli import launch  # noqa: E402

main = launch("benchmark", __name__)
