"""Evaluate weights on a config's validation set: COCO AP (pycocotools) or VOC mAP.

Runs ``yolo_asff.cli.evaluate`` from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.cli.evaluate import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
