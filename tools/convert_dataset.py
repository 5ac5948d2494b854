"""Convert a config's dataset (both splits) to COCO JSON, a VOC tree or YOLO txt, with a config that trains on it.

Runs ``yolo_asff.cli.convert_dataset`` from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.cli.convert_dataset import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
