"""Files shipped with the package: a real photograph for the demo, its tests and smoke checks."""
from __future__ import annotations

from pathlib import Path

__all__ = ["sample_image_path"]

_HERE = Path(__file__).resolve().parent


def sample_image_path() -> str:
    """Path of ``astronaut.jpg``: a 512×512 public-domain NASA portrait (see ``assets/README.md``)."""
    path = _HERE / "astronaut.jpg"
    if not path.is_file():
        raise FileNotFoundError(
            f"the sample photo {path} is missing from the installed package; reinstall yolo-asff "
            "(pip install -e .) so that package data is included"
        )
    return str(path)
