"""Detect objects in pictures or video and write annotated copies.

    yolo-asff demo --weights runs/builtin/best.pth --source data/builtin/video.mp4 \\
        [--config builtin] [--out runs/demo] [--conf 0.3] [--fusion-maps] [--save-txt] [--save-json]

--source is an image, a folder or a quoted glob of images ("shots/*/*.png"), a video file
(.mp4 .avi .mov .mkv ...) or a webcam index (0). A checkpoint brings its own config and class names;
--config is needed for a Darknet file or for random weights (a smoke test). Outputs go under --out
(a numbered --out-2, -3 ... when it already holds files) mirroring the input's folders; a video is
written as VP8 WebM where this OpenCV can (browsers play it), else MPEG-4. --fusion-maps also writes
<name>_fusion.jpg: the ASFF weights α, β, γ of every level over the picture (for a video, every
--fusion-every frames). Unreadable images in a folder and broken video frames are skipped and counted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from ..config import Config
from ..data import DatasetError
from ..data.build import dataset_class_names
from ..engine.demo import DemoOutputs, Source, Summary, read_frames, resolve_source, run_images, run_video
from ..engine.loading import model_for_weights
from ..engine.predictor import Predictor, resolve_device
from ..utils.cli import UserError, tool_main
from ..utils.files import check_writable, make_dir, numbered_folder

__all__ = ["Summary", "class_names_for", "main", "read_frames", "resolve_source"]


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


def build_predictor(args: argparse.Namespace) -> Tuple[Predictor, Config, List[str], bool, Optional[List[int]]]:
    """The model with its weights on the chosen device, wrapped in a Predictor; its config, class names,
    whether it has ASFF fusion, and the dataset's category ids (where the checkpoint has them)."""
    ready = model_for_weights(args.weights, args.config, args.opts)
    cfg, model = ready.cfg, ready.model
    if ready.weights is not None:
        what = (f"{ready.weights.darknet_layers} Darknet layers loaded" if ready.weights.source == "darknet"
                else f"({ready.weights.source}): {ready.weights.report.summary()}")
        print(f"weights: {args.weights}{': ' if ready.weights.source == 'darknet' else ' '}{what}")
    else:
        print("WARNING: no --weights given: the model has RANDOM initial weights and its detections mean\n"
              "WARNING: nothing. Use this only as a smoke test; pass --weights CHECKPOINT.pth or FILE.weights.",
              file=sys.stderr)
    for note in ready.notes:
        print(f"note: {note}")
    try:
        device = resolve_device(args.device or cfg.runtime.device)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
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
    names = ready.class_names
    if names is None or len(names) != cfg.model.num_classes:
        names, note = class_names_for(cfg)
        if note:
            print(f"note: {note}")
    return predictor, cfg, names, getattr(model, "fusion", None) is not None, ready.category_ids


def output_folder(args: argparse.Namespace, source: Source) -> Path:
    """--out, or a numbered --out-N when it already holds files; never the folder of the source pictures."""
    out = Path(args.out)
    if source.kind == "images" and any(p.parent.resolve() == out.resolve() for p in source.paths):
        raise UserError(f"--out {out} is where the source images are: they would be overwritten; "
                        "choose another --out")
    free = numbered_folder(out)
    if free != out:
        print(f"note: {out} already holds files: writing to {free}")
    return make_dir(free)


@tool_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config YAML or shipped config name (default: the checkpoint's own)")
    parser.add_argument("--weights", help="yolo-asff checkpoint (.pth) or Darknet .weights "
                        "(omitted: random weights, a smoke test)")
    parser.add_argument("--source", required=True, help="image, folder, glob, video file or webcam index")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo; numbered when taken)")
    parser.add_argument("--conf", type=float, default=0.3, help="score threshold (default 0.3)")
    parser.add_argument("--nms", type=float, default=0.65, help="NMS IoU threshold (default 0.65)")
    parser.add_argument("--size", type=int, help="input size, a multiple of 32 (default test.img_size)")
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default runtime.device)")
    parser.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    parser.add_argument("--fusion-maps", action="store_true", help="also write ASFF weight heat maps")
    parser.add_argument("--fusion-every", type=int, default=30, help="video: fusion maps every N frames (default 30)")
    parser.add_argument("--max-frames", type=int, default=0, help="video/webcam: stop after N frames (0 = all)")
    parser.add_argument("--save-txt", action="store_true", help="also write YOLO txt labels (with scores) under "
                        "OUT/labels/")
    parser.add_argument("--save-json", action="store_true", help="also write OUT/detections.json (COCO results)")
    parser.add_argument("--codec", choices=("auto", "vp8", "mp4v"), default="auto",
                        help="video codec: auto (VP8 WebM, which browsers play, where OpenCV has it), vp8, or mp4v "
                             "(faster to encode)")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides, e.g. model.num_classes=20")
    args = parser.parse_args(argv)

    if args.fusion_every < 1:
        raise UserError(f"--fusion-every must be at least 1, got {args.fusion_every}")
    source = resolve_source(args.source)
    check_writable(args.out, "--out folder", folder=True)
    predictor, cfg, names, has_fusion, category_ids = build_predictor(args)
    fusion = args.fusion_maps
    if fusion and not has_fusion:
        print(f"note: {cfg.model.arch} (model.fusion={cfg.model.fusion}) has no ASFF fusion: no fusion maps written")
        fusion = False
    out = output_folder(args, source)
    size = "x".join(map(str, predictor.input_size[::-1]))
    print(f"model: {cfg.model.arch}, {cfg.model.num_classes} classes, input {size}, "
          f"{'letterbox' if predictor.keep_ratio else 'stretch'}, {predictor.device}, "
          f"{'fp16' if predictor.half else 'fp32'}, conf {args.conf}, nms {args.nms}")
    outputs = DemoOutputs(out, names, fusion, args.fusion_every, args.save_txt, args.save_json, category_ids)
    if source.kind == "images":
        summary = run_images(predictor, source, outputs)
        if not summary.items:
            raise UserError(f"none of the {len(source.paths)} images could be read")
        if not summary.written:
            raise UserError(f"none of the {summary.items} annotated images could be written to {out} (disk full? "
                            "permissions?)")
        print(f"annotated images: {summary.written} in {out}")
        unit = "images"
    else:
        summary, path, fps = run_video(predictor, source, outputs, args.max_frames, args.codec)
        if not summary.items:
            raise UserError(f"no frame of {args.source} could be read")
        print(f"annotated video: {path} ({summary.written} frames read and written, {fps:g} fps)")
        unit = "frames"
    if summary.fusion_written:
        print(f"fusion maps: {summary.fusion_written} in {out} (*_fusion.jpg)")
    if args.save_txt:
        print(f"labels: {out / 'labels'} (YOLO txt with scores)")
    written = outputs.finish()
    if written is not None:
        print(f"detections: {written} ({len(outputs.results)}, COCO results format)")
    skipped = f", skipped {len(summary.skipped)}" if summary.skipped else ", skipped 0"
    if summary.skipped:
        skipped += f" ({', '.join(summary.skipped[:5])}{', ...' if len(summary.skipped) > 5 else ''})"
    print(f"summary: {summary.items} {unit}, {summary.detections} detections{skipped}")
    return 0
