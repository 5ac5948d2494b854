"""The built-in dataset: a detection task generated locally, so the main job needs no download.

Six shape classes with random colours and textures are drawn at 8 px to half the
image size over textured backgrounds (real photographs from scikit-image when it is
installed), some overlapping, plus distractor clutter that belongs to no class.
A second kind, ``glyphs``, is there to check that a training recipe is not tuned to the shapes
alone: five letters (other classes), mostly small (10 to 72 px tall on pictures of the same sizes), on
synthetic stripes, checks, gradients and noise (other backgrounds) with distractor characters.
Everything is deterministic by seed and written in the COCO, VOC and YOLO txt layouts,
so every reader is exercised on it::

    python -m yolo_asff.data.builtin --out data/builtin [--train 1000] [--val 200] [--seed 0] [--kind glyphs]

    DIR/annotations/{train,val}.json        COCO instances files
    DIR/images/{train,val}/*.jpg
    DIR/labels/{train,val}/*.txt            YOLO txt labels of those pictures
    DIR/data.yaml                           the YOLO data YAML
    DIR/VOCdevkit/VOCbuiltin/{Annotations,JPEGImages,ImageSets/Main/{train,val}.txt}
    DIR/video.mp4                           moving shapes, for the video demo (shapes kind only)

The generator writes only into a folder that is missing or that it wrote itself (it leaves the
marker file ``.yolo-asff-builtin`` first thing): pointed at a folder of the user's, it refuses.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

import cv2
import numpy as np
import yaml

from ..utils.files import link_or_copy
from .records import DatasetError
from .transforms import box_iou_np
from .yolo import label_lines

__all__ = ["CLASSES", "GLYPHS", "KINDS", "class_names", "generate_builtin", "render_image", "render_glyph_image",
           "ensure_builtin"]

CLASSES = ("circle", "square", "triangle", "star", "ring", "cross")
GLYPHS = ("A", "E", "K", "R", "7")  # the glyphs kind's classes
_DISTRACTORS = ("0", "3", "%", "#", "S")  # drawn like the glyphs, in no class
KINDS = ("shapes", "glyphs")
VOC_YEAR = "builtin"
MIN_SIZE = 8
MARKER = ".yolo-asff-builtin"  # written first: this folder is the generator's to write
VERSION = 2  # in READY: 2 added the YOLO txt layout; an older complete folder is written again


def _backgrounds() -> List[np.ndarray]:
    """Public-domain photographs shipped with scikit-image, if it is installed (else none)."""
    try:
        from skimage import data as skdata  # optional: better backgrounds, not a requirement
    except ImportError:
        return []
    photos = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field"):
        try:
            img = getattr(skdata, name)()
        except Exception:  # a missing data file must not stop generation
            continue
        if img.ndim == 3 and img.shape[2] == 3:
            photos.append(cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return photos


def _background(rng: np.random.Generator, h: int, w: int, photos: Sequence[np.ndarray]) -> np.ndarray:
    if photos and rng.random() < 0.7:
        photo = photos[rng.integers(len(photos))]
        ph, pw = photo.shape[:2]
        scale = rng.uniform(max(h / ph, w / pw), max(h / ph, w / pw) * 2)
        big = cv2.resize(photo, (math.ceil(pw * scale), math.ceil(ph * scale)))
        y, x = rng.integers(big.shape[0] - h + 1), rng.integers(big.shape[1] - w + 1)
        img = big[y:y + h, x:x + w].copy()
    else:
        coarse = rng.integers(0, 256, (rng.integers(2, 6), rng.integers(2, 6), 3)).astype(np.uint8)
        img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
        noise = rng.normal(0, rng.uniform(4, 20), (h, w, 1))
        img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    # Clutter that belongs to no class: lines and blobs the detector must learn to ignore.
    for _ in range(rng.integers(2, 10)):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p1 = (int(rng.integers(w)), int(rng.integers(h)))
        if rng.random() < 0.6:
            p2 = (int(rng.integers(w)), int(rng.integers(h)))
            cv2.line(img, p1, p2, color, int(rng.integers(1, 4)), cv2.LINE_AA)
        else:
            axes = (int(rng.integers(2, 12)), int(rng.integers(2, 12)))
            cv2.ellipse(img, p1, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    return img


def _shape_mask(cls: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size``×``size`` uint8 mask of shape class ``cls``, filling its box on both axes."""
    m = np.zeros((size, size), np.uint8)
    s = size - 1
    c = s / 2.0
    shift = 4  # sub-pixel precision for small shapes
    pts = lambda p: (np.asarray(p) * (1 << shift)).round().astype(np.int32)  # noqa: E731
    name = CLASSES[cls]
    if name == "circle":
        cv2.circle(m, pts((c, c)), int(round(c * (1 << shift))), 255, -1, cv2.LINE_AA, shift)
    elif name == "square":
        m[:] = 255
    elif name == "triangle":
        cv2.fillPoly(m, [pts([(c, 0), (s, s), (0, s)])], 255, cv2.LINE_AA, shift)
    elif name == "star":
        angles = np.arange(10) * math.pi / 5 - math.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        star = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], 1)
        star = (star - star.min(0)) / (star.max(0) - star.min(0)) * s
        cv2.fillPoly(m, [pts(star)], 255, cv2.LINE_AA, shift)
    elif name == "ring":
        cv2.circle(m, pts((c, c)), int(round(c * (1 << shift))), 255, -1, cv2.LINE_AA, shift)
        cv2.circle(m, pts((c, c)), int(round(c * rng.uniform(0.45, 0.65) * (1 << shift))), 0, -1, cv2.LINE_AA, shift)
    else:  # cross
        t = max(1, int(round(size * rng.uniform(0.25, 0.4) / 2)))
        m[:, max(0, int(c) - t + 1):int(c) + t + 1] = 255
        m[max(0, int(c) - t + 1):int(c) + t + 1, :] = 255
    return m


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A fill for a shape: a solid colour, stripes, or noisy colour."""
    base = rng.integers(0, 256, 3).astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        return np.broadcast_to(base, (h, w, 3)).astype(np.uint8)
    if kind == 1:
        other = rng.integers(0, 256, 3).astype(np.float32)
        period = rng.uniform(3, 10)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        phase = (xx * math.cos(angle) + yy * math.sin(angle)) / period
        stripes = (np.floor(phase) % 2)[..., None]
        return (base * stripes + other * (1 - stripes)).astype(np.uint8)
    return np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def free_spot(rng: np.random.Generator, box_size: Callable[[], Tuple[int, int]], canvas: Tuple[int, int],
              boxes: Sequence[np.ndarray], max_iou: float, tries: int = 10) -> Optional[np.ndarray]:
    """A ``(4,)`` xyxy box at a random position inside a ``canvas`` (w, h) whose IoU with each of ``boxes`` is below
    ``max_iou``, or None after ``tries`` positions; ``box_size()`` gives its (w, h) anew for each try."""
    for _attempt in range(tries):
        bw, bh = box_size()
        x, y = int(rng.integers(0, canvas[0] - bw + 1)), int(rng.integers(0, canvas[1] - bh + 1))
        box = np.array([x, y, x + bw, y + bh], np.float32)
        if not boxes or (box_iou_np(box[None], np.array(boxes)) < max_iou).all():
            return box
    return None


def _shape_size(rng: np.random.Generator, w: int, h: int) -> Tuple[int, int]:
    """A random object size (w, h) for a ``w × h`` picture: log-uniform side, aspect 0.7-1.4, at least MIN_SIZE."""
    side = int(round(math.exp(rng.uniform(math.log(MIN_SIZE + 4), math.log(min(h, w) / 2)))))
    aspect = rng.uniform(0.7, 1.4)
    bw, bh = max(MIN_SIZE, int(side * aspect)), max(MIN_SIZE, int(side / aspect))
    return min(bw, w), min(bh, h)


def render_image(rng: np.random.Generator, photos: Sequence[np.ndarray] = (), size: Optional[Tuple[int, int]] = None):
    """One image with its objects: ``(image BGR uint8, boxes (N, 4) xyxy float32, labels (N,) int64)``."""
    h, w = size if size is not None else (int(rng.integers(256, 385)), int(rng.integers(288, 449)))
    img = _background(rng, h, w, photos)
    boxes: List[np.ndarray] = []
    labels: List[int] = []
    for _ in range(int(rng.integers(1, 9))):
        box = free_spot(rng, lambda: _shape_size(rng, w, h), (w, h), boxes, max_iou=0.3)
        if box is None:
            continue
        x, y, bw, bh = int(box[0]), int(box[1]), int(box[2] - box[0]), int(box[3] - box[1])
        cls = int(rng.integers(len(CLASSES)))
        mask = cv2.resize(_shape_mask(cls, 64 if max(bw, bh) > 32 else 32, rng), (bw, bh), interpolation=cv2.INTER_AREA)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        region = img[y:y + bh, x:x + bw].astype(np.float32)
        img[y:y + bh, x:x + bw] = (region * (1 - alpha) + _texture(rng, bh, bw) * alpha).astype(np.uint8)
        boxes.append(box)
        labels.append(cls)
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX,
          cv2.FONT_HERSHEY_PLAIN)


def _pattern_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A synthetic background (no photographs): stripes, checks, a gradient or coloured noise, with clutter."""
    a, b = (rng.integers(0, 256, 3).astype(np.float32) for _ in range(2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(4))
    if kind == 0:
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 40)
        t = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) + 1) / 2
    elif kind == 1:
        cell = rng.uniform(8, 48)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2).astype(np.float32)
    elif kind == 2:
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    else:
        t = cv2.resize(rng.random((int(rng.integers(4, 16)), int(rng.integers(4, 16)))).astype(np.float32), (w, h),
                       interpolation=cv2.INTER_CUBIC).clip(0, 1)
    img = a * t[..., None] + b * (1 - t[..., None]) + rng.normal(0, rng.uniform(2, 12), (h, w, 1))
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 12))):  # strokes and dots in no class
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p1, p2 = (int(rng.integers(w)), int(rng.integers(h))), (int(rng.integers(w)), int(rng.integers(h)))
        if rng.random() < 0.5:
            cv2.line(img, p1, p2, color, int(rng.integers(1, 3)), cv2.LINE_AA)
        else:
            cv2.circle(img, p1, int(rng.integers(2, 6)), color, -1, cv2.LINE_AA)
    return img


def _glyph_mask(text: str, height: int, rng: np.random.Generator) -> np.ndarray:
    """A uint8 mask of ``text`` in a random Hershey font and stroke, cropped to its ink, ``height`` px tall."""
    font, thickness = _FONTS[int(rng.integers(len(_FONTS)))], int(rng.integers(2, 7))
    canvas = np.zeros((160, 160), np.uint8)
    cv2.putText(canvas, text, (20, 120), font, 3.0, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas > 127)
    ink = canvas[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    aspect = ink.shape[1] / ink.shape[0] * rng.uniform(0.8, 1.25)
    return cv2.resize(ink, (max(MIN_SIZE, int(round(height * aspect))), height), interpolation=cv2.INTER_AREA)


def render_glyph_image(rng: np.random.Generator, photos: Sequence[np.ndarray] = (),  # noqa: ARG001 - same signature
                       size: Optional[Tuple[int, int]] = None):
    """One picture of the glyphs kind: ``(image BGR uint8, boxes (N, 4) xyxy float32, labels (N,) int64)``.

    Boxes are the letters' ink extents; distractor characters get no box.
    """
    h, w = size if size is not None else (int(rng.integers(256, 385)), int(rng.integers(288, 449)))
    img = _pattern_background(rng, h, w)
    boxes: List[np.ndarray] = []
    labels: List[int] = []
    taken: List[np.ndarray] = []
    count = int(rng.integers(2, 13))
    for k in range(count + int(rng.integers(0, 4))):
        cls = int(rng.integers(len(GLYPHS))) if k < count else -1
        height = int(round(math.exp(rng.uniform(math.log(MIN_SIZE + 2), math.log(72)))))
        mask = _glyph_mask(GLYPHS[cls] if cls >= 0 else _DISTRACTORS[int(rng.integers(len(_DISTRACTORS)))],
                           height, rng)
        bh, bw = mask.shape
        if bw >= w or bh >= h:
            continue
        for _attempt in range(10):
            x, y = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            box = np.array([x, y, x + bw, y + bh], np.float32)
            if not taken or not _overlaps(box, np.array(taken), margin=2):
                break
        else:
            continue
        region = img[y:y + bh, x:x + bw].astype(np.float32)
        # A colour at least 90 levels from the local background in each channel, so that every letter shows.
        under = region.reshape(-1, 3).mean(0)
        shift = rng.uniform(90, 128, 3)
        color = np.where(under < 128, under + shift, under - shift).clip(0, 255)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        img[y:y + bh, x:x + bw] = (region * (1 - alpha) + color * alpha).astype(np.uint8)
        taken.append(box)
        if cls >= 0:
            boxes.append(box)
            labels.append(cls)
    return img, np.array(boxes, np.float32).reshape(-1, 4), np.array(labels, np.int64)


def _overlaps(box: np.ndarray, others: np.ndarray, margin: float) -> bool:
    """Whether xyxy ``box`` grown by ``margin`` px touches any of ``others`` (M, 4)."""
    ix = np.minimum(box[2] + margin, others[:, 2]) - np.maximum(box[0] - margin, others[:, 0])
    iy = np.minimum(box[3] + margin, others[:, 3]) - np.maximum(box[1] - margin, others[:, 1])
    return bool(((ix > 0) & (iy > 0)).any())


def class_names(kind: str = "shapes") -> Tuple[str, ...]:
    """The class names of built-in dataset ``kind`` (see :data:`KINDS`)."""
    return GLYPHS if kind == "glyphs" else CLASSES


def _renderer(kind: str) -> Callable:
    if kind not in KINDS:
        raise DatasetError(f"unknown built-in dataset kind '{kind}': choose one of {', '.join(KINDS)}")
    return render_glyph_image if kind == "glyphs" else render_image


def _voc_xml(file_name: str, w: int, h: int, boxes: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> str:
    objects = "".join(
        f"  <object><name>{escape(names[c])}</name><difficult>0</difficult><bndbox>"
        # VOC is 1-based and inclusive: continuous [x1, x2] covers pixels x1+1 .. x2.
        f"<xmin>{int(b[0]) + 1}</xmin><ymin>{int(b[1]) + 1}</ymin><xmax>{int(b[2])}</xmax><ymax>{int(b[3])}</ymax>"
        "</bndbox></object>\n"
        for b, c in zip(boxes, labels)
    )
    return (f"<annotation>\n  <filename>{escape(file_name)}</filename>\n"
            f"  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>\n{objects}</annotation>\n")


def _write_split(out: Path, split: str, count: int, rng: np.random.Generator, photos, start_id: int,
                 kind: str = "shapes") -> None:
    img_dir = out / "images" / split
    voc = out / "VOCdevkit" / f"VOC{VOC_YEAR}"
    for d in (img_dir, out / "annotations", voc / "Annotations", voc / "JPEGImages", voc / "ImageSets" / "Main"):
        d.mkdir(parents=True, exist_ok=True)
    labels_dir = out / "labels" / split
    labels_dir.mkdir(parents=True, exist_ok=True)
    images, annotations, ids = [], [], []
    for i in range(count):
        image_id = start_id + i
        stem = f"{split}_{image_id:06d}"
        img, boxes, labels = _renderer(kind)(rng, photos)
        h, w = img.shape[:2]
        cv2.imwrite(str(img_dir / f"{stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "width": w, "height": h})
        for b, c in zip(boxes, labels):
            x1, y1, x2, y2 = (float(v) for v in b)
            annotations.append({
                "id": len(annotations) + 1 + start_id * 16, "image_id": image_id, "category_id": int(c) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
        (voc / "Annotations" / f"{stem}.xml").write_text(_voc_xml(f"{stem}.jpg", w, h, boxes, labels, class_names(kind)))
        (labels_dir / f"{stem}.txt").write_text(label_lines(boxes, labels, w, h))
        link_or_copy(img_dir / f"{stem}.jpg", voc / "JPEGImages" / f"{stem}.jpg")
        ids.append(stem)
    categories = [{"id": i + 1, "name": n, "supercategory": kind} for i, n in enumerate(class_names(kind))]
    coco = {"info": {"description": f"yolo-asff built-in dataset ({kind})"}, "images": images,
            "annotations": annotations, "categories": categories}
    (out / "annotations" / f"{split}.json").write_text(json.dumps(coco))
    (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def _write_video(path: Path, rng: np.random.Generator, photos, seconds: float = 4.0, fps: int = 15) -> None:
    h, w = 360, 480
    background = _background(rng, h, w, photos)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder in this OpenCV build)")
    sprites = []
    for _ in range(5):
        cls, side = int(rng.integers(len(CLASSES))), int(rng.integers(24, 90))
        mask = cv2.resize(_shape_mask(cls, 64, rng), (side, side), interpolation=cv2.INTER_AREA)
        sprites.append((mask, _texture(rng, side, side), rng.uniform([0, 0], [w - side, h - side]),
                        rng.uniform(-4, 4, 2), side))
    for _ in range(int(seconds * fps)):
        frame = background.copy()
        for k, (mask, tex, pos, vel, side) in enumerate(sprites):
            pos += vel
            for axis, limit in ((0, w - side), (1, h - side)):
                if not 0 <= pos[axis] <= limit:
                    vel[axis] = -vel[axis]
                    pos[axis] = np.clip(pos[axis], 0, limit)
            x, y = int(pos[0]), int(pos[1])
            alpha = (mask.astype(np.float32) / 255.0)[..., None]
            region = frame[y:y + side, x:x + side].astype(np.float32)
            frame[y:y + side, x:x + side] = (region * (1 - alpha) + tex * alpha).astype(np.uint8)
        writer.write(frame)
    writer.release()


def _is_generators(out: Path) -> bool:
    """Whether ``out`` may be written: missing, or written by this generator (its marker, or the READY
    file of an earlier version, which says ``train=... val=... seed=...``)."""
    if not out.exists() and not out.is_symlink():
        return True
    ready = out / "READY"
    return (out / MARKER).is_file() or (ready.is_file() and ready.read_text(errors="replace").startswith(
        ("train=", "version=")))


def _refuse(out: Path) -> DatasetError:
    what = "is not a folder" if out.exists() and not out.is_dir() else "exists and was not written by the generator"
    return DatasetError(
        f"{out} {what} (no {MARKER} file): the built-in dataset generator never writes into a folder of yours. "
        "Point data.root at a new folder for the built-in data (or set data.builtin: false to train on the data "
        f"in {out}); with `python -m yolo_asff.data.builtin`, pass another --out")


def generate_builtin(out: os.PathLike | str, train: int = 1000, val: int = 200, seed: int = 0,
                     kind: str = "shapes") -> Path:
    """Write built-in dataset ``kind`` (see the module docstring) and return its folder.

    Raises:
        DatasetError: ``out`` exists and was not written by the generator, or ``kind`` is unknown.
    """
    _renderer(kind)
    out = Path(out)
    if not _is_generators(out):
        raise _refuse(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by yolo_asff.data.builtin; it may write here again\n")
    (out / "READY").unlink(missing_ok=True)
    for old in ("images", "labels", "annotations", "VOCdevkit"):  # a smaller set must not keep old pictures
        shutil.rmtree(out / old, ignore_errors=True)
    (out / "video.mp4").unlink(missing_ok=True)
    photos = _backgrounds() if kind == "shapes" else []
    rng = np.random.default_rng(seed)
    _write_split(out, "train", train, np.random.default_rng(rng.integers(2**32)), photos, start_id=1, kind=kind)
    _write_split(out, "val", val, np.random.default_rng(rng.integers(2**32)), photos, start_id=train + 1, kind=kind)
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": ".", "train": "images/train", "val": "images/val", "names": list(class_names(kind))},
        sort_keys=False))
    video_rng = np.random.default_rng(rng.integers(2**32))
    if kind == "shapes":
        _write_video(out / "video.mp4", video_rng, photos)
    (out / "READY").write_text(f"version={VERSION} kind={kind} train={train} val={val} seed={seed}\n")
    return out


def _ready(out: Path, kind: str) -> bool:
    ready = out / "READY"
    if not ready.is_file():
        return False
    words = ready.read_text().split()
    written = next((w.split("=", 1)[1] for w in words if w.startswith("kind=")), "shapes")  # older: shapes only
    return f"version={VERSION}" in words and written == kind


def ensure_builtin(out: os.PathLike | str = "data/builtin", kind: str = "shapes", **kwargs) -> Path:
    """Built-in dataset ``kind`` at ``out``, generated first if it is missing, incomplete, from an older
    version, or of another kind (a folder the generator wrote is its own to rewrite).

    Raises:
        DatasetError: ``out`` exists and was not written by the generator (it is never written into).
    """
    out = Path(out)
    if not _ready(out, kind):
        generate_builtin(out, kind=kind, **kwargs)
    return out


def generator_parser(description: str, out: str, train: int, val: int) -> argparse.ArgumentParser:
    """The options every dataset generator's command line has: ``--out``, ``--train``, ``--val``, ``--seed``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=out, help="output folder")
    parser.add_argument("--train", type=int, default=train, help="training pictures")
    parser.add_argument("--val", type=int, default=val, help="validation pictures")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run_generator(generate: Callable[[], Path], done: str) -> None:
    """Run a generator; print ``done`` and the time taken, or its :class:`DatasetError` as one line (exit 2)."""
    start = time.perf_counter()
    try:
        generate()
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{done} ({time.perf_counter() - start:.1f} s)")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = generator_parser("Generate the yolo-asff built-in detection dataset.", "data/builtin", 1000, 200)
    parser.add_argument("--kind", choices=KINDS, default="shapes", help="which built-in dataset")
    args = parser.parse_args(argv)
    run_generator(lambda: generate_builtin(args.out, args.train, args.val, args.seed, kind=args.kind),
                  f"built-in dataset ({args.kind}): {args.train} train + {args.val} val images in {args.out}")


if __name__ == "__main__":
    main()
