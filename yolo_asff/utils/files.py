"""Writing files so that a run killed at any moment never leaves half a file behind."""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping, Optional, Union

from ..errors import OutputError

__all__ = [
    "atomic_write", "check_writable", "json_safe", "link_or_copy", "make_dir", "numbered_folder", "write_json",
]


def _deepest_existing(path: Path) -> Optional[Path]:
    """``path`` or its nearest ancestor that exists (None for a relative path none of whose parts exist)."""
    return next((p for p in (path, *path.parents) if p.exists()), None)


def make_dir(path: Union[str, os.PathLike], what: str = "output folder") -> Path:
    """``mkdir -p path``; a path that cannot be a folder (a file in the way, no permission) is an OutputError."""
    path = Path(path)
    blocker = _deepest_existing(path)
    if blocker is not None and not blocker.is_dir():
        raise OutputError(f"cannot create the {what} {path}: {blocker} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the {what} {path}: {exc.strerror or exc}") from exc
    return path


def check_writable(path: Union[str, os.PathLike], what: str = "output file", folder: bool = False) -> Path:
    """Fail early, before long work, when ``path`` (a file, or with ``folder`` a folder) cannot be
    written: a folder where the file should be, or a file where a folder should be. Creates nothing.

    Raises:
        OutputError: naming the path and what is in the way.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise OutputError(f"cannot write the {what} {path}: it is a folder; give a file name")
    blocker = _deepest_existing(path if folder else path.parent)
    if blocker is not None and not blocker.is_dir():
        raise OutputError(f"cannot write the {what} {path}: {blocker} is a file, not a folder")
    if blocker is not None and not os.access(blocker, os.W_OK):
        raise OutputError(f"cannot write the {what} {path}: no permission to write in {blocker}")
    return path


def atomic_write(path: Union[str, os.PathLike], write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Readers see either the old file or the complete new one.

    Raises:
        OutputError: the folder cannot be created or written, or ``path`` is a folder.
    """
    path = Path(path)
    make_dir(path.parent, "folder")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; give a file name")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise


def _json_value(value: Any) -> Any:
    """Numbers JSON does not know (numpy, tensors) as floats, anything else (paths, dtypes) as text."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float (Python or numpy) as None, recursively through dicts,
    lists and tuples: strict JSON has no NaN, and readers other than Python's reject it."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return number if math.isfinite(number) else None


def write_json(path: Union[str, os.PathLike], data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented, strict JSON (NaN and infinities as null), atomically (see :func:`atomic_write`)."""
    text = json.dumps(json_safe(data), indent=2, default=_json_value, allow_nan=False) + "\n"
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def link_or_copy(src: Union[str, os.PathLike], dst: Union[str, os.PathLike], copy: bool = False) -> bool:
    """Put ``src`` at ``dst`` as a hard link (no space used), or a copy where links are not possible (another
    file system) or ``copy`` is asked for. A file already at ``dst`` is replaced. Returns whether it copied.

    Raises:
        OutputError: ``dst`` cannot be written (no permission, disk full).
    """
    dst = Path(dst)
    try:
        dst.unlink(missing_ok=True)
        if not copy:
            try:
                os.link(src, dst)
                return False
            except OSError:
                pass
        shutil.copyfile(src, dst)
        return True
    except OSError as exc:
        raise OutputError(f"cannot write {dst}: {exc.strerror or exc}") from exc


def numbered_folder(path: Union[str, os.PathLike], taken=None) -> Path:
    """``path`` if it does not exist or is an empty folder, else the first free ``path-2``, ``path-3``, ...

    ``taken(folder) -> bool`` says whether a folder counts as used (default: it exists and is not empty).
    """
    path = Path(path)

    def used(folder: Path) -> bool:
        if taken is not None:
            return taken(folder)
        return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))

    candidate, n = path, 1
    while used(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate
