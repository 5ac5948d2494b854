"""Writing files so that a run killed at any moment never leaves half a file behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Union

__all__ = ["atomic_write", "write_json"]


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see either the old file or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _json_value(value: Any) -> Any:
    """Numbers JSON does not know (numpy, tensors) as floats, anything else (paths, dtypes) as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def write_json(path: Union[str, os.PathLike], data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON, atomically (see :func:`atomic_write`)."""
    text = json.dumps(data, indent=2, default=_json_value) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))
