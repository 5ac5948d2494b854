"""Convert a released checkpoint of the official ASFF code into a yolo-asff checkpoint.

Runs ``yolo_asff.cli.convert_official`` from a clone, without installing the package (``--help`` for the options).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff.cli.convert_official import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
