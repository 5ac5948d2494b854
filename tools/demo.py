"""Detect objects in pictures or video and write annotated copies.

    python tools/demo.py --config configs/builtin.yaml --weights runs/builtin/last.pth \\
        --source data/builtin/video.mp4 [--out runs/demo] [--conf 0.3] [--fusion-maps]

--source is an image, a folder or a quoted glob of images ("shots/*.png"), a video file
(.mp4 .avi .mov .mkv ...) or a webcam index (0). Images are written under --out with
their own names; a video as <name>.mp4 (mp4v, same fps and size). --fusion-maps also
writes <name>_fusion.jpg: the ASFF weights α, β, γ of every level over the picture (for a
video, every --fusion-every frames). Unreadable images in a folder and broken video frames
are skipped and counted.
"""
from __future__ import annotations

import argparse
import glob
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo_asff import build_model, load_config  # noqa: E402
from yolo_asff.config import Config  # noqa: E402
from yolo_asff.data import DatasetError  # noqa: E402
from yolo_asff.data.build import dataset_class_names  # noqa: E402
from yolo_asff.data.images import IMAGE_EXTENSIONS, is_image_name  # noqa: E402
from yolo_asff.engine.checkpoint import CheckpointError, load_weights_file  # noqa: E402
from yolo_asff.engine.postprocess import Detections  # noqa: E402
from yolo_asff.engine.predictor import Predictor, read_image, resolve_device  # noqa: E402
from yolo_asff.utils.cli import UserError, tool_main  # noqa: E402
from yolo_asff.utils.files import check_writable, make_dir  # noqa: E402
from yolo_asff.utils.fusion_maps import fusion_figure  # noqa: E402
from yolo_asff.utils.visualize import draw_boxes  # noqa: E402

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm")
MAX_BAD_FRAMES_IN_A_ROW = 25  # then the stream is taken to have ended


@dataclass
class Source:
    """What --source named: ``images`` (``paths``, ``single`` for one file), ``video`` or ``webcam``."""

    kind: str
    paths: List[Path] = field(default_factory=list)
    single: bool = False
    camera: int = 0


@dataclass
class Summary:
    """What a run did: pictures or frames annotated, detections drawn, inputs skipped, figures written."""

    items: int = 0
    detections: int = 0
    skipped: List[str] = field(default_factory=list)
    fusion_written: int = 0


def resolve_source(text: str) -> Source:
    """Classify --source; raise UserError for a missing path, an unknown type or no images."""
    path = Path(text)
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if p.is_file() and is_image_name(p))
        if not paths:
            raise UserError(f"no images ({' '.join(IMAGE_EXTENSIONS)}) in folder {path}")
        return Source("images", paths)
    if path.is_file():
        ext = path.suffix.lower()
        if is_image_name(path):
            return Source("images", [path], single=True)
        if ext in VIDEO_EXTS:
            return Source("video", [path])
        raise UserError(f"unsupported file type '{ext or path.name}' for {path}: use an image "
                        f"({' '.join(IMAGE_EXTENSIONS)}), a video ({' '.join(VIDEO_EXTS)}), a folder or a glob")
    if text.isdigit():
        return Source("webcam", camera=int(text))
    if any(c in text for c in "*?["):
        matches = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if Path(p).is_file()]
        paths = [p for p in matches if is_image_name(p)]
        if not paths:
            raise UserError(f"no images match {text!r} ({len(matches)} other files do)")
        return Source("images", paths)
    raise UserError(f"source not found: {path} (give an image, a folder, a glob, a video or a webcam index)")


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


def load_weights(model: torch.nn.Module, path: Path) -> List[str]:
    """Load a checkpoint ('ema' weights when present) or a Darknet .weights file; lines to print."""
    try:
        loaded = load_weights_file(model, path)
    except (CheckpointError, FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    if loaded.source == "darknet":
        return [f"weights: {path}: {loaded.darknet_layers} Darknet layers loaded"]
    key, report = loaded.source, loaded.report
    if not report.loaded:
        raise UserError(f"none of the tensors in {path} fit this model: does --config match the checkpoint?")
    lines = [f"weights: {path} ({key}): {report.summary()}"]
    if loaded.hint and (report.shape_mismatch or report.missing):
        raise UserError(f"{path} does not fit the model of this config: {report.summary()}. {loaded.hint}")
    if report.shape_mismatch or report.missing:
        lines.append("warning: the checkpoint does not cover the whole model; detections may be poor")
    return lines


def annotate(image: np.ndarray, det: Detections, names: Sequence[str]) -> np.ndarray:
    """A copy of BGR ``image`` with ``det`` (original-image pixels) drawn, one colour per class."""
    return draw_boxes(image, det.boxes.numpy(), det.labels.numpy(), names, det.scores.numpy())


def write_fusion(path: Path, image: np.ndarray, maps: List[torch.Tensor], index: int, predictor: Predictor) -> None:
    """Write the 3 × 3 ASFF weight figure of picture ``index`` of a batch's ``(B, 3, H_l, W_l)`` maps."""
    figure = fusion_figure(image, [m[index] for m in maps], predictor.input_size, predictor.keep_ratio)
    cv2.imwrite(str(path), figure)


def run_images(predictor: Predictor, source: Source, names: Sequence[str], out: Path, fusion: bool) -> Summary:
    """Annotate every picture of ``source`` into ``out`` under its own name, a batch at a time.

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
                    raise UserError(str(exc)) from exc
                summary.skipped.append(path.name)
                tqdm.write(f"skipped: {exc}", file=sys.stderr)
        if images:
            dets, maps = predictor(images, return_fusion=True) if fusion else (predictor(images), [])
            for k, (path, image, det) in enumerate(zip(chunk, images, dets)):
                cv2.imwrite(str(out / path.name), annotate(image, det, names))
                if maps:
                    write_fusion(out / f"{path.stem}_fusion.jpg", image, maps, k, predictor)
                    summary.fusion_written += 1
                summary.items += 1
                summary.detections += len(det.boxes)
        bar.update(min(predictor.batch_size, len(source.paths) - start))
    bar.close()
    return summary


def read_frames(capture: cv2.VideoCapture, total: int, summary: Summary) -> Iterator[Tuple[int, np.ndarray]]:
    """``(index, frame)`` for each decodable frame; broken ones are counted in ``summary.skipped``.

    ``total`` <= 0 (a webcam) ends at the first failed read. Otherwise failed reads count as
    broken frames only when a good frame follows them: a container that announces more
    frames than it holds does not make its missing tail "skipped".
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


def run_video(predictor: Predictor, source: Source, names: Sequence[str], out: Path, fusion: bool,
              fusion_every: int, max_frames: int) -> Tuple[Summary, Path, float]:
    """Annotate a video file or webcam stream into ``out/<name>.mp4`` (mp4v, the input's fps and size).

    Returns the summary, the video written and its fps. Ctrl-C ends a webcam run cleanly.
    """
    if source.kind == "webcam":
        capture, stem = cv2.VideoCapture(source.camera), f"webcam{source.camera}"
    else:
        capture, stem = cv2.VideoCapture(str(source.paths[0])), source.paths[0].stem
    if not capture.isOpened():
        what = f"webcam {source.camera}" if source.kind == "webcam" else f"video {source.paths[0]}"
        raise UserError(f"cannot open {what} (missing device, corrupt file, or a codec this OpenCV build lacks)")
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if source.kind == "video" else 0
    if max_frames > 0:
        total = min(total, max_frames) if total > 0 else max_frames
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and fps > 0 else 30.0
    path = out / f"{stem}.mp4"
    if source.kind == "video" and path.resolve() == source.paths[0].resolve():
        raise UserError(f"--out {out} would overwrite the source video {path}; choose another --out")
    summary, writer = Summary(), None
    bar = tqdm(total=total if total > 0 else None, unit="frame", desc="demo", disable=not sys.stderr.isatty())
    try:
        frames = read_frames(capture, total, summary)
        while True:
            batch = [item for _, item in zip(range(predictor.batch_size), frames)]
            if not batch:
                break
            images = [frame for _, frame in batch]
            dets, maps = predictor(images, return_fusion=True) if fusion else (predictor(images), [])
            for k, ((index, frame), det) in enumerate(zip(batch, dets)):
                if writer is None:
                    h, w = frame.shape[:2]
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise UserError(f"OpenCV cannot write {path} (no mp4v encoder in this build)")
                writer.write(annotate(frame, det, names))
                if maps and index % fusion_every == 0:
                    write_fusion(out / f"{stem}_{index:06d}_fusion.jpg", frame, maps, k, predictor)
                    summary.fusion_written += 1
                summary.items += 1
                summary.detections += len(det.boxes)
            bar.update(len(batch))
    except KeyboardInterrupt:
        tqdm.write("interrupted: closing the video written so far", file=sys.stderr)
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
    return summary, path, fps


def build_predictor(args: argparse.Namespace, cfg: Config) -> Tuple[Predictor, bool]:
    """The model with its weights on the chosen device, wrapped in a Predictor; and whether it fuses."""
    try:
        device = resolve_device(args.device or cfg.runtime.device)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    model = build_model(cfg)
    if args.weights:
        for line in load_weights(model, Path(args.weights)):
            print(line)
    else:
        print("WARNING: no --weights given: the model has RANDOM initial weights and its detections mean\n"
              "WARNING: nothing. Use this only as a smoke test; pass --weights CHECKPOINT.pth or FILE.weights.",
              file=sys.stderr)
    half = args.half
    if half and device.type != "cuda":
        print(f"warning: --half needs a CUDA device; running fp32 on {device}", file=sys.stderr)
        half = False
    overrides = dict(conf_thresh=args.conf, nms_thresh=args.nms, device=device, half=half)
    if args.size:
        overrides["img_size"] = args.size
    try:
        predictor = Predictor.from_config(cfg, model, **overrides)
    except ValueError as exc:
        raise UserError(f"{exc} (--size / test.img_size)") from exc
    return predictor, getattr(model, "fusion", None) is not None


@tool_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="model config YAML")
    parser.add_argument("--weights", help="yolo-asff checkpoint (.pth) or Darknet .weights "
                        "(omitted: random weights, a smoke test)")
    parser.add_argument("--source", required=True, help="image, folder, glob, video file or webcam index")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--conf", type=float, default=0.3, help="score threshold (default 0.3)")
    parser.add_argument("--nms", type=float, default=0.65, help="NMS IoU threshold (default 0.65)")
    parser.add_argument("--size", type=int, help="input size, a multiple of 32 (default test.img_size)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default runtime.device)")
    parser.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    parser.add_argument("--fusion-maps", action="store_true", help="also write ASFF weight heat maps")
    parser.add_argument("--fusion-every", type=int, default=30, help="video: fusion maps every N frames (default 30)")
    parser.add_argument("--max-frames", type=int, default=0, help="video/webcam: stop after N frames (0 = all)")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides, e.g. model.num_classes=20")
    args = parser.parse_args(argv)

    if args.fusion_every < 1:
        raise UserError(f"--fusion-every must be at least 1, got {args.fusion_every}")
    cfg = load_config(args.config, args.opts)
    check_writable(args.out, "--out folder", folder=True)
    source = resolve_source(args.source)
    out = Path(args.out)
    if source.kind == "images" and any(p.parent.resolve() == out.resolve() for p in source.paths):
        raise UserError(f"--out {out} is where the source images are: they would be overwritten; "
                        "choose another --out")
    predictor, has_fusion = build_predictor(args, cfg)
    names, note = class_names_for(cfg)
    if note:
        print(f"note: {note}")
    fusion = args.fusion_maps
    if fusion and not has_fusion:
        print(f"note: {cfg.model.arch} (model.fusion={cfg.model.fusion}) has no ASFF fusion: "
              "no fusion maps written")
        fusion = False
    make_dir(out)
    size = "x".join(map(str, predictor.input_size[::-1]))
    print(f"model: {cfg.model.arch}, {cfg.model.num_classes} classes, input {size}, "
          f"{'letterbox' if predictor.keep_ratio else 'stretch'}, {predictor.device}, "
          f"{'fp16' if predictor.half else 'fp32'}, conf {args.conf}, nms {args.nms}")
    if source.kind == "images":
        summary = run_images(predictor, source, names, out, fusion)
        if not summary.items:
            raise UserError(f"none of the {len(source.paths)} images could be read")
        print(f"annotated images: {summary.items} in {out}")
        unit = "images"
    else:
        summary, path, fps = run_video(predictor, source, names, out, fusion, args.fusion_every, args.max_frames)
        if not summary.items:
            raise UserError(f"no frame of {args.source} could be read")
        print(f"annotated video: {path} ({summary.items} frames, {fps:g} fps)")
        unit = "frames"
    if summary.fusion_written:
        print(f"fusion maps: {summary.fusion_written} in {out} (*_fusion.jpg)")
    skipped = f", skipped {len(summary.skipped)}" if summary.skipped else ", skipped 0"
    if summary.skipped:
        skipped += f" ({', '.join(summary.skipped[:5])}{', ...' if len(summary.skipped) > 5 else ''})"
    print(f"summary: {summary.items} {unit}, {summary.detections} detections{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
