"""Write grids of augmented training samples with their boxes and class names: what the model will see.

``yolo-asff browse`` run from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's package, installed or not
from yolo_asff.cli import launch  # noqa: E402

main = launch("browse", __name__)
