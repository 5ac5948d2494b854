"""The demo: detections drawn on pictures, folders, globs, videos and webcams, written under one folder.

What it writes, and the rules it keeps:

- **Outputs mirror the input's folders.** A picture found as ``cam1/0001.jpg`` under the folder or
  glob given is written as ``OUT/cam1/0001.jpg``, so pictures with the same name in different folders
  never overwrite each other. An output never lands outside ``OUT``, whatever the input paths hold
  (``..``, absolute paths, symbolic links), and never replaces another output: a clash gets ``_2``.
- **Counts are of what happened.** Every number printed is of files written or frames read, never
  what a listing or a video header claims.
- **Videos play in browsers** when this OpenCV build can encode VP8 (``.webm``); otherwise MPEG-4
  part 2 (``.mp4``, for players, not browsers). The log says which codec was used.
- ``save_txt`` writes YOLO txt labels with the score (``class cx cy w h score``, normalised) under
  ``OUT/labels/``; ``save_json`` writes all detections in the COCO results format to
  ``OUT/detections.json`` (``image_id``: the picture's path under the input, or the frame index).

:func:`run_demo` is the whole job (``yolo-asff demo``): the weights and their config, the predictor, the
output folder, the picture or video loop, and the lines it prints.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..config import Config
from ..data.build import dataset_class_names
from ..data.images import IMAGE_EXTENSIONS, is_image_name
from ..data.records import DatasetError
from ..data.yolo import label_lines
from ..errors import InvalidInputError, OutputError
from ..utils.device import resolve_device
from ..utils.files import atomic_write, check_writable, make_dir, numbered_folder
from ..utils.logging import get_logger
from ..utils.sizes import Size, parse_size
from ..utils.visualize import draw_boxes
from .fusion_maps import fusion_figure
from .loading import LoadedModel, model_for_weights
from .postprocess import Detections
from .predictor import Predictor, read_image

__all__ = [
    "VIDEO_EXTENSIONS", "DemoOutputs", "OutputNamer", "Source", "Summary", "class_names_for", "load_predictor",
    "output_folder", "read_frames", "resolve_source", "run_demo", "run_images", "run_video", "video_writer",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm")
MAX_BAD_FRAMES_IN_A_ROW = 25  # then the stream is taken to have ended
# (fourcc, extension, what): tried in order. VP8 in WebM plays in every current browser; H.264 is not in
# the PyPI OpenCV builds (licensing); MPEG-4 part 2 always works but browsers do not play it.
CODECS = (("VP80", ".webm", "VP8 (WebM; plays in browsers)"), ("mp4v", ".mp4", "MPEG-4 part 2 (not for browsers)"))


@dataclass
class Source:
    """What --source named: ``images`` (``paths``; ``base``, the folder their relative paths start at;
    ``single`` for one file), ``video`` or ``webcam``."""

    kind: str
    paths: List[Path] = field(default_factory=list)
    base: Optional[Path] = None
    single: bool = False
    camera: int = 0


@dataclass
class Summary:
    """What a run did: pictures or frames read and annotated, files written, detections, inputs skipped."""

    items: int = 0
    written: int = 0
    detections: int = 0
    skipped: List[str] = field(default_factory=list)
    fusion_written: int = 0


def _glob_base(pattern: str) -> Path:
    """The folder part of a glob before its first wildcard (``data/*/images/*.jpg`` -> ``data``)."""
    parts = PurePath(pattern).parts
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def resolve_source(text: str) -> Source:
    """Classify --source.

    Raises:
        InvalidInputError: a missing path, an unknown file type, or no pictures.
    """
    path = Path(text)
    if path.is_dir():  # its sub-folders too: outputs mirror them
        paths = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
        if not paths:
            raise InvalidInputError(f"no images ({' '.join(IMAGE_EXTENSIONS[:8])} ...) in folder {path}")
        return Source("images", paths, base=path)
    if path.is_file():
        if is_image_name(path):
            return Source("images", [path], base=path.parent, single=True)
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            return Source("video", [path])
        raise InvalidInputError(
            f"unsupported file type '{path.suffix.lower() or path.name}' for {path}: use an image "
            f"({' '.join(IMAGE_EXTENSIONS[:8])} ...), a video ({' '.join(VIDEO_EXTENSIONS)}), a folder or a glob")
    if text.isdigit():
        return Source("webcam", camera=int(text))
    if glob.has_magic(text):
        matches = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
        paths = [p for p in matches if is_image_name(p)]
        if not paths:
            raise InvalidInputError(f"no images match {text!r} ({len(matches)} other files do)")
        return Source("images", paths, base=_glob_base(text))
    raise InvalidInputError(f"source not found: {path} (give an image, a folder, a glob, a video or a webcam index)")


class OutputNamer:
    """Output paths under one folder: the input's relative folders kept, never outside it, never reused."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.real_out = Path(os.path.realpath(out))
        self.taken: set = set()

    def relative(self, path: Path, base: Optional[Path]) -> PurePath:
        """``path`` relative to ``base``, worked out on the names (symbolic links are not followed)."""
        if base is None:
            return PurePath(path.name)
        return PurePath(os.path.relpath(os.path.abspath(path), os.path.abspath(base)))

    def _inside(self, path: Path) -> bool:
        """Whether ``path`` (made or not) lies in OUT once symbolic links are followed: its deepest existing
        ancestor does (what is made below it is made there)."""
        existing = next((p for p in (path, *path.parents) if os.path.lexists(p)), None)
        real = os.path.realpath(existing) if existing is not None else ""
        return bool(real) and os.path.commonpath([real, str(self.real_out)]) == str(self.real_out)

    def path_for(self, rel: PurePath, suffix: Optional[str] = None) -> Path:
        """A fresh path ``OUT/rel``, its folders made: ``suffix`` replaces a picture's or video's extension
        and is appended to any other name (``cam.2024-05-01_000012`` + ``.txt``)."""
        parts = ["__" if p == ".." else p for p in rel.parts if p not in ("", ".", rel.anchor)] or ["output"]
        target = self.out.joinpath(*parts)
        if suffix is not None:
            known = is_image_name(target.name) or target.suffix.lower() in VIDEO_EXTENSIONS
            target = target.with_suffix(suffix) if known else target.with_name(target.name + suffix)
        if not self._inside(target.parent):
            target = self.out / target.name  # a symbolic link in OUT points elsewhere: stay inside
        make_dir(target.parent)
        stem, suffix_of, n = target.stem, target.suffix, 1
        while target in self.taken or os.path.lexists(target):  # a dangling link is taken too
            n += 1
            target = target.with_name(f"{stem}_{n}{suffix_of}")
        self.taken.add(target)
        return target


@dataclass
class DemoOutputs:
    """Where and what a demo run writes (see the module docstring)."""

    out: Path
    names: Sequence[str]
    fusion: bool = False
    fusion_every: int = 30
    save_txt: bool = False
    save_json: bool = False
    category_ids: Optional[Sequence[int]] = None  # the dataset's id of each class (COCO's gapped ones); else indices
    namer: OutputNamer = field(init=False)
    results: List[Dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.namer = OutputNamer(self.out)

    def record(self, image_id: Any, rel: PurePath, det: Detections, shape: Tuple[int, int]) -> None:
        """Keep ``det`` of one picture or frame for ``--save-txt`` / ``--save-json``."""
        boxes, scores, labels = det.boxes.numpy(), det.scores.numpy(), det.labels.numpy()
        if self.save_txt:
            h, w = shape
            lines = label_lines(boxes, labels.tolist(), w, h).splitlines()
            text = "".join(f"{line} {score:.5f}\n" for line, score in zip(lines, scores.tolist()))
            path = self.namer.path_for(PurePath("labels") / rel, ".txt")
            atomic_write(path, lambda f: f.write(text.encode("utf-8")))
        if self.save_json:
            for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                x1, y1, x2, y2 = box
                category = int(self.category_ids[int(label)]) if self.category_ids else int(label)
                self.results.append({"image_id": image_id, "category_id": category,
                                     "category_name": self.names[int(label)], "bbox": [round(x1, 2), round(y1, 2),
                                     round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(score, 5)})

    def finish(self) -> Optional[Path]:
        """Write ``detections.json`` (``--save-json``); returns its path."""
        if not self.save_json:
            return None
        path = self.namer.path_for(PurePath("detections.json"))
        atomic_write(path, lambda f: f.write(json.dumps(self.results, allow_nan=False).encode("utf-8")))
        return path


def annotate(image: np.ndarray, det: Detections, names: Sequence[str]) -> np.ndarray:
    """A copy of BGR ``image`` with ``det`` (original-image pixels) drawn, one colour per class."""
    return draw_boxes(image, det.boxes.numpy(), det.labels.numpy(), names, det.scores.numpy())


def _write_fusion(path: Path, image: np.ndarray, maps: List[torch.Tensor], index: int, predictor: Predictor) -> bool:
    figure = fusion_figure(image, [m[index] for m in maps], predictor.input_size, predictor.keep_ratio)
    return bool(cv2.imwrite(str(path), figure))


def _picture_suffix(path: Path) -> str:
    """The input's extension when OpenCV can write it, else .jpg."""
    suffix = path.suffix.lower()
    try:
        return suffix if cv2.haveImageWriter(f"x{suffix}") else ".jpg"
    except cv2.error:
        return ".jpg"


def run_images(predictor: Predictor, source: Source, outputs: DemoOutputs) -> Summary:
    """Annotate every picture of ``source`` (see the module docstring for where), a batch at a time.

    In a folder or glob an unreadable picture is skipped and counted; a single one is an error.
    """
    summary = Summary()
    bar = tqdm(total=len(source.paths), unit="img", desc="demo", disable=not sys.stderr.isatty())
    for start in range(0, len(source.paths), predictor.batch_size):
        images, chunk = [], []
        for path in source.paths[start:start + predictor.batch_size]:
            try:
                images.append(read_image(path))
                chunk.append(path)
            except (FileNotFoundError, ValueError) as exc:
                if source.single:
                    raise
                summary.skipped.append(path.name)
                tqdm.write(f"skipped: {exc}", file=sys.stderr)
        if images:
            dets, maps = predictor(images, return_fusion=True) if outputs.fusion else (predictor(images), [])
            for k, (path, image, det) in enumerate(zip(chunk, images, dets)):
                rel = outputs.namer.relative(path, source.base)
                target = outputs.namer.path_for(rel, _picture_suffix(path))
                summary.items += 1
                if not cv2.imwrite(str(target), annotate(image, det, outputs.names)):
                    summary.skipped.append(f"{path.name} (not written)")
                    continue
                summary.written += 1
                summary.detections += len(det.boxes)
                if maps and _write_fusion(outputs.namer.path_for(rel.with_name(f"{rel.stem}_fusion.jpg")), image,
                                          maps, k, predictor):
                    summary.fusion_written += 1
                outputs.record(rel.as_posix(), rel, det, image.shape[:2])
        bar.update(min(predictor.batch_size, len(source.paths) - start))
    bar.close()
    return summary


def read_frames(capture: cv2.VideoCapture, total: int, summary: Summary) -> Iterator[Tuple[int, np.ndarray]]:
    """``(index, frame)`` for each decodable frame; broken ones are counted in ``summary.skipped``.

    ``total`` <= 0 (a webcam, or a video whose header gives no count) ends at the first run of failed
    reads. Failed reads count as broken frames only when a good frame follows them: a container that
    announces more frames than it holds does not make its missing tail "skipped".
    """
    index, pending = 0, []
    while total <= 0 or index < total:
        ok, frame = capture.read()
        if ok and frame is not None:
            summary.skipped.extend(pending)
            pending = []
            yield index, frame
        elif total <= 0 or len(pending) + 1 >= MAX_BAD_FRAMES_IN_A_ROW:
            return
        else:
            pending.append(f"frame {index}")
        index += 1


@contextlib.contextmanager
def _quiet_stderr():
    """Silence what C libraries print to the process's stderr (file descriptor 2) for a moment."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an IDE, a service): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def video_writer(stem_path: Path, fps: float, size: Tuple[int, int], namer: OutputNamer,
                 codec: str = "auto") -> Tuple[cv2.VideoWriter, Path, str]:
    """An open writer for ``stem_path`` + the codec's extension: VP8 WebM where this OpenCV encodes it
    (``codec="auto"``), else MPEG-4; ``codec`` ``vp8`` or ``mp4v`` asks for one. Returns the writer, its
    path and the codec's description.

    Raises:
        OutputError: no codec could be opened.
    """
    choices = [c for c in CODECS if codec == "auto" or c[0].lower().startswith(codec.lower()[:3])]
    for fourcc, suffix, what in choices:
        path = namer.path_for(PurePath(stem_path.name), suffix)  # "cam.2024-05-01" + ".webm"
        with _quiet_stderr():  # FFmpeg's note that WebM takes no fourcc tag (it then picks the codec itself)
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            return writer, path, what
        namer.taken.discard(path)
        path.unlink(missing_ok=True)
    raise OutputError(f"OpenCV cannot write a video here (tried {', '.join(c[0] for c in choices)}): this build "
                      "has no video encoder")


def run_video(predictor: Predictor, source: Source, outputs: DemoOutputs, max_frames: int = 0,
              codec: str = "auto") -> Tuple[Summary, Optional[Path], float]:
    """Annotate a video file or webcam stream into one video under the output folder (the input's fps
    and size; frames written = frames read). Returns the summary, the video written and its fps.
    Ctrl-C ends a webcam run cleanly."""
    if source.kind == "webcam":
        capture, stem = cv2.VideoCapture(source.camera), f"webcam{source.camera}"
    else:
        capture, stem = cv2.VideoCapture(str(source.paths[0])), source.paths[0].stem
    if not capture.isOpened():
        what = f"webcam {source.camera}" if source.kind == "webcam" else f"video {source.paths[0]}"
        raise InvalidInputError(f"cannot open {what} (missing device, corrupt file, or a codec this OpenCV lacks)")
    claimed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if source.kind == "video" else 0
    total = claimed if claimed > 0 else 0
    if max_frames > 0:
        total = min(total, max_frames) if total > 0 else max_frames
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 else 30.0
    summary, writer, path = Summary(), None, None
    bar = tqdm(total=total if total > 0 else None, unit="frame", desc="demo", disable=not sys.stderr.isatty())
    try:
        frames = read_frames(capture, total, summary)
        while True:
            batch = [item for _, item in zip(range(predictor.batch_size), frames)]
            if not batch:
                break
            images = [frame for _, frame in batch]
            dets, maps = predictor(images, return_fusion=True) if outputs.fusion else (predictor(images), [])
            for k, ((index, frame), det) in enumerate(zip(batch, dets)):
                if writer is None:
                    writer, path, what = video_writer(Path(stem), fps, (frame.shape[1], frame.shape[0]),
                                                      outputs.namer, codec)
                    get_logger("demo").info("writing %s with %s", path, what)
                writer.write(annotate(frame, det, outputs.names))
                summary.items, summary.written = summary.items + 1, summary.written + 1
                outputs.record(index, PurePath(f"{stem}_{index:06d}"), det, frame.shape[:2])
                summary.detections += len(det.boxes)
                if maps and index % outputs.fusion_every == 0 and _write_fusion(
                        outputs.namer.path_for(PurePath(f"{stem}_{index:06d}_fusion.jpg")), frame, maps, k, predictor):
                    summary.fusion_written += 1
            bar.update(len(batch))
    except KeyboardInterrupt:
        tqdm.write("interrupted: closing the video written so far", file=sys.stderr)
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
    return summary, path, fps


# ----------------------------------------------------------------------------- the whole job


def class_names_for(cfg: Config) -> Tuple[List[str], Optional[str]]:
    """The model's class names from the config's dataset, and a note when they had to be made up.

    ``data.class_names``, else the dataset's own (COCO categories, the YOLO data YAML's names,
    the built-in or VOC class list); ``class N`` when none fits ``model.num_classes``.
    """
    count = cfg.model.num_classes
    try:
        names, where = dataset_class_names(cfg), "the dataset of the config"
    except DatasetError as exc:
        names, where = None, f"the dataset of the config ({exc})"
    if names is not None and len(names) == count:
        return names, None
    found = f"{len(names)} names in {where}" if names is not None else f"no class names in {where}"
    return [f"class {i}" for i in range(count)], (
        f"{found} for model.num_classes={count}; labels show 'class N' (set data.class_names to name them)")


def _say_what_was_loaded(ready: LoadedModel, weights: Optional[str]) -> None:
    if ready.weights is None:
        print("WARNING: no --weights given: the model has RANDOM initial weights and its detections mean\n"
              "WARNING: nothing. Use this only as a smoke test; pass --weights CHECKPOINT.pth or FILE.weights.",
              file=sys.stderr)
    elif ready.weights.source == "darknet":
        print(f"weights: {weights}: {ready.weights.darknet_layers} Darknet layers loaded")
    else:
        print(f"weights: {weights} ({ready.weights.source}): {ready.weights.report.summary()}")
    for note in ready.notes:
        print(f"note: {note}")


def load_predictor(
    weights: Optional[str], config: Optional[str] = None, opts: Sequence[str] = (), *, size: Optional[Size] = None,
    conf: Optional[float] = None, nms: Optional[float] = None, device: Optional[str] = None, half: bool = False,
    graphed: bool = False,
) -> Tuple[Predictor, LoadedModel, List[str]]:
    """The model of ``weights`` (random weights when None: a smoke test) on its device in a :class:`Predictor`;
    the loaded model with its config, and one class name per class. Prints what was loaded.

    ``size``, ``conf``, ``nms`` and ``device`` replace ``test.img_size``, ``test.show_thresh``,
    ``test.nms_thresh`` and ``runtime.device`` when given; ``half`` on a machine without CUDA warns and
    runs float32. ``graphed``: see :class:`Predictor`.

    Raises:
        ConfigError, CheckpointError: see :func:`~yolo_asff.engine.loading.model_for_weights`.
        InvalidInputError: a size, device or threshold (outside 0 to 1) that cannot be used, found before the
            weights are loaded.
    """
    for flag, value in (("--conf", conf), ("--nms", nms)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"{flag} must be between 0 and 1, got {value}")
    img_size = parse_size(size, "--size") if size is not None else None  # checked before the weights load
    asked = resolve_device(device, "--device") if device else None
    ready = model_for_weights(weights, config, opts)
    cfg = ready.cfg
    _say_what_was_loaded(ready, weights)
    where = asked or resolve_device(cfg.runtime.device, "runtime.device")
    if half and where.type != "cuda":
        print(f"warning: --half needs a CUDA device; running fp32 on {where}", file=sys.stderr)
        half = False
    overrides: Dict[str, Any] = dict(device=where, half=half, graphed=graphed)
    for key, value in (("conf_thresh", conf), ("nms_thresh", nms)):
        if value is not None:
            overrides[key] = value
    if img_size is not None:
        overrides["img_size"] = img_size
    predictor = Predictor.from_config(cfg, ready.model, **overrides)
    names = ready.class_names
    if names is None or len(names) != cfg.model.num_classes:
        names, note = class_names_for(cfg)
        if note:
            print(f"note: {note}")
    return predictor, ready, names


def output_folder(out: Path, source: Source) -> Path:
    """``out``, or a numbered ``out-N`` when it already holds files; never the folder of the source pictures.

    Raises:
        OutputError: ``out`` is where the source pictures are (they would be overwritten).
    """
    if source.kind == "images" and any(p.parent.resolve() == out.resolve() for p in source.paths):
        raise OutputError(f"--out {out} is where the source images are: they would be overwritten; "
                          "choose another --out")
    free = numbered_folder(out)
    if free != out:
        print(f"note: {out} already holds files: writing to {free}")
    return make_dir(free)


def _print_summary(summary: Summary, unit: str, out: Path, outputs: DemoOutputs) -> None:
    if summary.fusion_written:
        print(f"fusion maps: {summary.fusion_written} in {out} (*_fusion.jpg)")
    if outputs.save_txt:
        print(f"labels: {out / 'labels'} (YOLO txt with scores)")
    written = outputs.finish()
    if written is not None:
        print(f"detections: {written} ({len(outputs.results)}, COCO results format)")
    skipped = f", skipped {len(summary.skipped)}" if summary.skipped else ", skipped 0"
    if summary.skipped:
        skipped += f" ({', '.join(summary.skipped[:5])}{', ...' if len(summary.skipped) > 5 else ''})"
    print(f"summary: {summary.items} {unit}, {summary.detections} detections{skipped}")


def run_demo(
    source: str, out: Union[str, os.PathLike] = "runs/demo", weights: Optional[str] = None,
    config: Optional[str] = None, opts: Sequence[str] = (), *, size: Optional[Size] = None,
    conf: Optional[float] = None, nms: Optional[float] = None, device: Optional[str] = None, half: bool = False,
    fusion_maps: bool = False, fusion_every: int = 30, max_frames: int = 0, save_txt: bool = False,
    save_json: bool = False, codec: str = "auto", graphed: bool = False,
) -> Summary:
    """``yolo-asff demo``: detect objects in ``source`` and write annotated copies under ``out``.

    ``source``: a picture, a folder (with its sub-folders), a glob, a video file or a webcam index
    (:func:`resolve_source`). ``weights``, ``config``, ``opts``: as :func:`load_predictor` takes them, with
    ``size``, ``conf``, ``nms``, ``device``, ``half`` and ``graphed``. ``fusion_maps``: also the ASFF weight maps
    (every ``fusion_every``-th frame of a video); ``max_frames``: stop a video after so many (0: all);
    ``save_txt``, ``save_json``, ``codec``: see the module docstring and :func:`video_writer`. Prints the
    model line, where the outputs went and a summary; returns the summary.

    Raises:
        InvalidInputError: a source that is missing, of an unknown kind, or of which nothing could be read.
        OutputError: an ``out`` that cannot be written, or where nothing could be written.
        ConfigError, CheckpointError: the weights or config (see :func:`load_predictor`).
    """
    if fusion_every < 1:
        raise InvalidInputError(f"--fusion-every must be at least 1, got {fusion_every}")
    found = resolve_source(source)
    check_writable(out, "--out folder", folder=True)
    predictor, ready, names = load_predictor(weights, config, opts, size=size, conf=conf, nms=nms, device=device,
                                             half=half, graphed=graphed)
    cfg = ready.cfg
    if fusion_maps and getattr(ready.model, "fusion", None) is None:
        print(f"note: {cfg.model.arch} (model.fusion={cfg.model.fusion}) has no ASFF fusion: no fusion maps written")
        fusion_maps = False
    folder = output_folder(Path(out), found)
    shown = "x".join(map(str, predictor.input_size[::-1]))
    print(f"model: {cfg.model.arch}, {cfg.model.num_classes} classes, input {shown}, "
          f"{'letterbox' if predictor.keep_ratio else 'stretch'}, {predictor.device}, "
          f"{'fp16' if predictor.half else 'fp32'}, conf {predictor.conf_thresh}, nms {predictor.nms_thresh}")
    outputs = DemoOutputs(folder, names, fusion_maps, fusion_every, save_txt, save_json, ready.category_ids)
    if found.kind == "images":
        summary = run_images(predictor, found, outputs)
        if not summary.items:
            raise InvalidInputError(f"none of the {len(found.paths)} images could be read")
        if not summary.written:
            raise OutputError(f"none of the {summary.items} annotated images could be written to {folder} (disk "
                              "full? permissions?)")
        print(f"annotated images: {summary.written} in {folder}")
    else:
        summary, path, fps = run_video(predictor, found, outputs, max_frames, codec)
        if not summary.items:
            raise InvalidInputError(f"no frame of {source} could be read")
        print(f"annotated video: {path} ({summary.written} frames read and written, {fps:g} fps)")
    _print_summary(summary, "images" if found.kind == "images" else "frames", folder, outputs)
    return summary
