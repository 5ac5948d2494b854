"""Finding the picture an annotation means, and reading its size without decoding it.

Annotation files name pictures in many ways that a plain ``folder / name`` misses: another
extension or letter case (``0001.PNG`` for ``0001.jpg``), a path from the annotating machine
(``C:\\data\\img\\0001.jpg``), a folder prefix already in the image folder. :class:`PictureFinder`
tries, in order, the name as given, the same name in another letter case, its last component, and
the same stem with any extension OpenCV can decode, and says which rule found it.

:func:`probe_image` reads a picture's header with Pillow (no pixel decoding) to get its size as
stored and its EXIF orientation. OpenCV's ``imread`` (what training uses) applies that orientation
for JPEG, PNG and WebP, so a picture stored 4000×3000 with orientation 6 decodes as 3000×4000;
the probe reports both, checked against an actual decode for such rotated pictures.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

__all__ = [
    "IMAGE_EXTENSIONS", "ImageProbe", "PictureFinder", "PictureLookup", "decode_picture", "is_image_name",
    "probe_image", "probe_images", "probe_pictures",
]

# File name extensions of the formats OpenCV's imread decodes (imgcodecs); whether a given file
# really decodes depends on the OpenCV build, which cv2.haveImageReader answers from its first bytes.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".avif", ".gif", ".jp2",
    ".pbm", ".pgm", ".ppm", ".pnm", ".pxm", ".pfm", ".sr", ".ras", ".hdr", ".pic", ".exr",
)
# EXIF orientations 5-8 transpose the picture (a quarter turn, with or without a mirror).
_TRANSPOSING = (5, 6, 7, 8)
_EXIF_ORIENTATION = 0x0112
PathLike = Union[str, os.PathLike]


def is_image_name(name: PathLike) -> bool:
    """Whether the file name has one of :data:`IMAGE_EXTENSIONS` (any letter case)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def decode_picture(path: PathLike, ignore_orientation: bool = False) -> Optional[np.ndarray]:
    """The picture at ``path`` as ``(H, W, 3)`` uint8 BGR (grey and alpha converted), or None if unreadable.

    Decoded from the file's bytes (``cv2.imdecode``), not by ``cv2.imread``, which fails on
    non-ASCII paths on Windows. OpenCV turns the picture by its EXIF orientation unless
    ``ignore_orientation``.
    """
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    flags = cv2.IMREAD_COLOR | (cv2.IMREAD_IGNORE_ORIENTATION if ignore_orientation else 0)
    return cv2.imdecode(data, flags) if data.size else None


def _decodable(path: Path) -> bool:
    """Whether OpenCV can decode the file (it looks at the first bytes)."""
    try:
        if cv2.haveImageReader(str(path)):
            return True
    except cv2.error:
        return False
    # haveImageReader opens the file with fopen, which cannot open non-ASCII paths on Windows: decode instead.
    return os.name == "nt" and not str(path).isascii() and decode_picture(path) is not None


@dataclass
class PictureLookup:
    """Where :meth:`PictureFinder.find` found a picture.

    Attributes:
        path: the picture, or None when nothing usable was found.
        rule: ``exact``, ``case`` (another letter case), ``basename`` (the name's last
            component, under the folder), ``stem`` (the same stem with another extension), or
            ``missing``.
        found: when ``path`` is None, similar files that exist but cannot be used (for the message).
    """

    path: Optional[Path]
    rule: str
    found: Tuple[str, ...] = ()


class PictureFinder:
    """Finds pictures under one folder, listing each folder it looks in once (case-insensitive).

    Args:
        root: the folder that picture names are relative to (``JPEGImages``, COCO's ``img_dir``).
    """

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root)
        self._listings: Dict[Path, Optional["_Listing"]] = {}

    def _listing(self, folder: Path) -> Optional["_Listing"]:
        if folder not in self._listings:
            try:
                names = sorted(e.name for e in os.scandir(folder) if e.is_file())
            except OSError:
                names = None
            self._listings[folder] = _Listing(names) if names is not None else None
        return self._listings[folder]

    def _same_name(self, folder: Path, name: str) -> Optional[Path]:
        listing = self._listing(folder)
        for real in listing.by_name.get(name.lower(), []) if listing else []:
            if _decodable(folder / real):
                return folder / real
        return None

    def _same_stem(self, folder: Path, stem: str) -> Tuple[Optional[Path], List[str]]:
        """A decodable picture ``stem.<extension>`` in ``folder``, else the similar files that exist."""
        listing = self._listing(folder)
        if listing is None:
            return None, []
        usable = sorted((n for n in listing.by_stem.get(stem.lower(), []) if is_image_name(n)),
                        key=lambda n: (IMAGE_EXTENSIONS.index(Path(n).suffix.lower()), n))
        for name in usable:
            if _decodable(folder / name):
                return folder / name, []
        similar = listing.by_stem.get(stem.lower(), []) + listing.by_first_part.get(stem.lower(), [])
        return None, sorted(set(similar))

    def find_file(self, name: str) -> Optional[Path]:
        """The file ``name`` directly under the folder, in any letter case (any kind of file); None if absent."""
        direct = self.root / name
        if direct.is_file():
            return direct
        listing = self._listing(self.root)
        reals = listing.by_name.get(name.lower(), []) if listing else []
        return self.root / reals[0] if reals else None

    def find(self, name: Optional[str], stem: Optional[str] = None) -> PictureLookup:
        """The picture that ``name`` (as an annotation file wrote it) or else ``stem`` means.

        Args:
            name: a file name or relative path as the annotation gives it (``\\`` separators
                and absolute paths from another machine allowed); None when the annotation has none.
            stem: the picture's id without extension, tried when ``name`` finds nothing (VOC ids).
        """
        folders = [self.root]
        stems: List[str]
        if name and name.strip():
            text = name.strip()
            spellings = [text] + ([text.replace("\\", "/")] if "\\" in text else [])
            for spelling in spellings:
                direct = Path(spelling) if Path(spelling).is_absolute() else self.root / spelling
                if direct.is_file() and _decodable(direct):
                    return PictureLookup(direct, "exact")
                found = self._same_name(direct.parent, direct.name)
                if found is not None:
                    return PictureLookup(found, "case")
                if direct.parent not in folders:
                    folders.append(direct.parent)
            base = PureWindowsPath(text).name  # the last component, whichever separator was used
            found = self._same_name(self.root, base)
            if found is not None:
                return PictureLookup(found, "basename")
            stems = [Path(base).stem] + ([stem] if stem and stem != Path(base).stem else [])
        else:
            stems = [stem] if stem else []
        similar: List[str] = []
        for name_stem in stems:  # the name's own stem, then the id (a VOC <filename> may name another file)
            for folder in folders:
                path, others = self._same_stem(folder, name_stem)
                if path is not None:
                    return PictureLookup(path, "stem")
                similar += [o for o in others if o not in similar]
        return PictureLookup(None, "missing", tuple(similar[:3]))


class _Listing:
    """The files of one folder by lower-cased name, stem (before the last dot) and first part (before the first)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.by_name: Dict[str, List[str]] = {}
        self.by_stem: Dict[str, List[str]] = {}
        self.by_first_part: Dict[str, List[str]] = {}
        for name in names:
            lower = name.lower()
            self.by_name.setdefault(lower, []).append(name)
            if "." in lower:
                self.by_stem.setdefault(lower.rsplit(".", 1)[0], []).append(name)
                first = lower.split(".", 1)[0]
                if first != lower.rsplit(".", 1)[0]:
                    self.by_first_part.setdefault(first, []).append(name)


@dataclass
class ImageProbe:
    """A picture's size, read from its header.

    Attributes:
        width, height: as OpenCV's ``imread`` decodes it (EXIF orientation applied), in pixels.
        stored_width, stored_height: as stored in the file, before any EXIF rotation.
        error: why the picture cannot be used (not a picture, a format this OpenCV cannot
            decode); the sizes are then 0.
        orientation: the EXIF orientation (1: none; OpenCV applies 2-8 when it decodes).
        measured: False when the sizes were taken from the annotation file, not the picture
            (``data.check_images: false``).
    """

    width: int = 0
    height: int = 0
    stored_width: int = 0
    stored_height: int = 0
    error: Optional[str] = None
    orientation: int = 1
    measured: bool = True

    @classmethod
    def from_annotation(cls, width: float, height: float) -> "ImageProbe":
        """The size an annotation file gives, trusted without looking at the picture."""
        w, h = int(round(width)), int(round(height))
        return cls(w, h, w, h, measured=False)

    @property
    def rotated(self) -> bool:
        """Whether decoding turns the picture a quarter (EXIF orientation 5-8): stored and decoded sizes swap."""
        return (self.width, self.height) != (self.stored_width, self.stored_height)


def _exif_orientation(image) -> int:
    """The EXIF orientation (1-8) of an opened Pillow image, without decoding its pixels."""
    if image.format not in ("JPEG", "MPO", "WEBP", "TIFF") and "exif" not in image.info:
        return 1  # PNG and others: Pillow would decode the whole picture to look further
    try:
        return int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block: OpenCV ignores it too
        return 1


def probe_image(path: PathLike, decodable: Optional[bool] = None) -> ImageProbe:
    """The size of the picture at ``path`` as stored and as ``cv2.imread`` decodes it (see :class:`ImageProbe`).

    Reads the header with Pillow; a format Pillow cannot parse is decoded once with OpenCV
    instead, and so is a picture with a transposing EXIF orientation (to take the size OpenCV
    really gives). ``decodable``: already known from :meth:`PictureFinder.find` (not asked again).
    Never raises: a problem is returned in ``error``.
    """
    path = Path(path)
    if not (decodable if decodable is not None else _decodable(path)):
        kind = "not a picture OpenCV can decode" if path.is_file() else "missing"
        return ImageProbe(error=kind)
    orientation = 1
    try:
        from PIL import Image

        with Image.open(path) as image:
            stored_w, stored_h = image.size
            orientation = _exif_orientation(image)
    except Exception:  # Pillow lacks the format (or the header is odd): ask OpenCV
        stored_w = stored_h = 0
    if stored_w and orientation not in _TRANSPOSING:
        return ImageProbe(stored_w, stored_h, stored_w, stored_h, orientation=orientation)
    decoded = decode_picture(path)
    if decoded is None:
        return ImageProbe(error="OpenCV cannot decode it (corrupt or unsupported)")
    height, width = decoded.shape[:2]
    if not stored_w:
        stored_w, stored_h = width, height
    return ImageProbe(width, height, stored_w, stored_h, orientation=orientation)


def probe_images(paths: Sequence[PathLike], threads: int = 8, decodable: bool = False) -> List[ImageProbe]:
    """:func:`probe_image` of each path, in order, with a few threads (the work is mostly file reads).

    ``decodable``: every path was found decodable already (by :meth:`PictureFinder.find`).
    """
    def probe(path: PathLike) -> ImageProbe:
        return probe_image(path, True if decodable else None)

    if len(paths) < 64 or threads <= 1:
        return [probe(p) for p in paths]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(probe, paths, chunksize=64))


def probe_pictures(
    paths: Sequence[PathLike], sizes: Sequence[Optional[Tuple[float, float]]], check: bool, found: bool = True,
) -> List[ImageProbe]:
    """Each picture's :class:`ImageProbe`: read from the picture when ``check`` (or when its annotation gives
    no size), else taken from the annotated ``sizes``. ``found``: the paths came from a
    :class:`PictureFinder` (decodable)."""
    need = [i for i, size in enumerate(sizes) if check or size is None]
    measured = dict(zip(need, probe_images([paths[i] for i in need], decodable=found and check)))
    return [measured[i] if i in measured else ImageProbe.from_annotation(*sizes[i]) for i in range(len(paths))]
