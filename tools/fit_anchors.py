"""Fit anchors to a config's training boxes: best-possible recall before and after, and the model.anchors block.

Runs ``yolo_asff.cli.fit_anchors`` from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.cli.fit_anchors import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
