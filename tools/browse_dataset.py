"""Write grids of augmented training samples with their boxes and class names: what the model will see.

Runs ``yolo_asff.cli.browse_dataset`` from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.cli.browse_dataset import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
