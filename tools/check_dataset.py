"""Check a config's dataset without training: what the trainer would read, and what is wrong with it.

Runs ``yolo_asff.cli.check_dataset`` from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.cli.check_dataset import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
