"""Convert a config's dataset (both splits) to COCO JSON, a VOC tree or YOLO txt, with a config that trains on it.

``yolo-asff convert`` run from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's package, installed or not
from yolo_asff.cli import launch  # noqa: E402

main = launch("convert", __name__)
