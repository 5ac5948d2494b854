"""Export a detector to ONNX with its box decoding, optionally with NMS in the graph.

    yolo-asff export --weights best.pth --out model.onnx [--config CFG] \
        [--size 608 | --size H W] [--batch 1] [--dynamic-batch] [--dynamic-size] \
        [--nms] [--conf 0.25] [--iou 0.65] [--max-det 100] [--half] [--opset 17|18|19] [--check]

Input ``images (B, 3, H, W)``: RGB, ``(x / 255 - mean) / std``, letterboxed (as for the
PyTorch model). Output without ``--nms``: ``predictions (B, N, 5 + C)``, the model's eval
output. With ``--nms``: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``,
``batch_index (K,)``, grouped by image, best first, at most ``--max-det`` per image.
``--check`` runs the file with onnxruntime and compares with PyTorch. The file carries what a
runtime needs as metadata (class names, input size, normalisation, letterbox padding value, output
layout): see :func:`yolo_asff.engine.export.onnx_metadata`.

Guided-anchor models (``model.head: guided``) have deformable convolutions: ONNX
``DeformConv``, opset 19 (the default for them; a lower ``--opset`` is an error).
``--check`` needs onnxruntime >= 1.25 for them; an older one reports that it cannot run
the (valid) file, and the command exits with status 2.
"""
from __future__ import annotations

import argparse

import torch

from ..engine.export import (
    DEFAULT_OPSET, DEFORM_CONV_OPSET, INSTALL_HINT, SUPPORTED_OPSETS, ExportError, check_onnx, export_onnx,
    onnx_metadata, onnx_output_names, resolve_opset,
)
from ..engine.loading import model_for_weights
from ..utils.cli import tool_main
from ..utils.files import check_writable


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config YAML or shipped config name (default: the checkpoint's own)")
    parser.add_argument("--weights", help="checkpoint (EMA weights when it has them); default: random initialisation")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--size", type=int, nargs="+", metavar="S",
                        help="input size: S, or H W (multiples of 32; default: test.img_size of the config)")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the graph (the example batch if dynamic)")
    parser.add_argument("--dynamic-batch", action="store_true", help="make the batch a dynamic axis")
    parser.add_argument("--dynamic-size", action="store_true", help="make height and width dynamic axes")
    parser.add_argument("--nms", action="store_true", help="include score threshold, NMS and --max-det in the graph")
    parser.add_argument("--conf", type=float, default=0.25, help="with --nms: score threshold (objectness x class)")
    parser.add_argument("--iou", type=float, default=0.65, help="with --nms: NMS IoU threshold")
    parser.add_argument("--max-det", type=int, default=100, help="with --nms: most detections per image")
    parser.add_argument("--half", action="store_true", help="float16 weights and input (for GPU runtimes)")
    parser.add_argument("--opset", type=int, choices=SUPPORTED_OPSETS,
                        help=f"ONNX opset (default: {DEFAULT_OPSET}; {DEFORM_CONV_OPSET} for guided-anchor models, "
                             "whose DeformConv needs it)")
    parser.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch on a random input")
    parser.add_argument("--opts", nargs="*", default=[], help="config overrides, e.g. model.num_classes=20")
    return parser.parse_args(argv)


def input_size(args: argparse.Namespace, cfg) -> tuple:
    size = args.size if args.size else cfg.test.img_size
    size = [size] if isinstance(size, int) else list(size)
    if len(size) not in (1, 2):
        raise ExportError(f"--size takes one value (square) or two (height width), got {len(size)}")
    h, w = (size[0], size[0]) if len(size) == 1 else size
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        raise ExportError(f"--size must be positive multiples of 32, got {h}x{w}")
    return h, w


def run(args: argparse.Namespace) -> int:
    if args.check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ExportError(f"--check needs onnxruntime, which is not installed; install it with: {INSTALL_HINT}") \
                from None
    check_writable(args.out, "--out file")
    if args.batch < 1 or args.max_det < 1:
        raise ExportError("--batch and --max-det must be at least 1")
    ready = model_for_weights(args.weights, args.config, args.opts)
    cfg, model = ready.cfg, ready.model
    h, w = input_size(args, cfg)
    opset = resolve_opset(model, args.opset)
    if ready.weights is not None:
        print(f"weights     {args.weights} ({ready.weights.source}): {ready.weights.summary()}")
    else:
        print("weights     none (random initialisation): pass --weights for a useful model")
    for note in ready.notes:
        print(f"note        {note}")
    names = ready.class_names or [f"class {i}" for i in range(cfg.model.num_classes)]
    device = "cuda" if args.half and torch.cuda.is_available() else "cpu"
    nms_kwargs = dict(conf_thresh=args.conf, nms_thresh=args.iou, max_det=args.max_det)
    path = export_onnx(model, args.out, (h, w), args.batch, dynamic_batch=args.dynamic_batch,
                       dynamic_size=args.dynamic_size, with_nms=args.nms, half=args.half, opset=opset,
                       device=device, metadata=onnx_metadata(cfg, names, (h, w), args.nms), **nms_kwargs)
    batch = "B" if args.dynamic_batch else str(args.batch)
    hw = "H, W" if args.dynamic_size else f"{h}, {w}"
    print(f"wrote       {path} ({path.stat().st_size / 1e6:.1f} MB, opset {opset}, "
          f"{'float16' if args.half else 'float32'} weights)")
    print(f"input       images ({batch}, 3, {hw}) {'float16' if args.half else 'float32'}: "
          f"RGB, (x/255 - mean)/std, {'letterboxed' if cfg.data.letterbox else 'stretched (no letterbox)'}")
    if args.nms:
        print(f"outputs     {', '.join(onnx_output_names(True))}: (K, 4), (K,), (K,) int64, (K,) int64; "
              f"score > {args.conf}, NMS IoU {args.iou}, at most {args.max_det} per image")
    else:
        cells = sum((h // s) * (w // s) for s in model.strides)
        rows = "N" if args.dynamic_size else str(model.head.num_anchors * cells)
        print(f"outputs     predictions ({batch}, {rows}, {5 + cfg.model.num_classes}): x1, y1, x2, y2 (input pixels), "
              "objectness, class probabilities")
    if not args.check:
        return 0
    shapes = [(args.batch, (h, w))]
    if args.dynamic_batch:
        shapes.append((args.batch + 1, (h, w)))
    if args.dynamic_size:
        shapes.append((args.batch, (h + 32, w + 64)))
    ok = True
    for batch_size, size in shapes:
        report = check_onnx(path, model, size, batch_size, with_nms=args.nms, half=args.half, **nms_kwargs)
        print(f"check       {report.summary()}")
        ok &= report.ok
    return 0 if ok else 1


@tool_main
def main(argv=None) -> int:
    return run(parse_args(argv))
