"""Model smoke check: build a config's model, print its size and cost, run it on one image.

``yolo-asff info`` run from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's package, installed or not
from yolo_asff.cli import launch  # noqa: E402

main = launch("info", __name__)
