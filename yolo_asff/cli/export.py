"""Export a detector to ONNX with its box decoding, optionally with NMS in the graph.

    yolo-asff export --weights best.pth --out model.onnx [--config CFG] \
        [--size 608 | --size H W] [--batch 1] [--dynamic-batch] [--dynamic-size] \
        [--nms] [--conf 0.3] [--iou 0.65] [--max-det 100] [--half] [--opset 17|18|19] [--check]

Input ``images (B, 3, H, W)``: RGB, ``(x / 255 - mean) / std``, letterboxed (as for the
PyTorch model). Output without ``--nms``: ``predictions (B, N, 5 + C)``, the model's eval
output. With ``--nms``: ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)``,
``batch_index (K,)``, grouped by image, best first, at most ``--max-det`` per image.
``--check`` runs the file with onnxruntime and compares with PyTorch. The file carries what a
runtime needs as metadata (class names, input size, normalisation, letterbox padding value, output
layout, precision): see :func:`yolo_asff.engine.export.onnx_metadata`. ``--half`` makes a float16 file
(weights and input; outputs stay float32) from a copy of the weights. The job itself is
:func:`yolo_asff.engine.export.export_weights`.

Guided-anchor models (``model.head: guided``) have deformable convolutions: ONNX
``DeformConv``, opset 19 (the default for them; a lower ``--opset`` is an error).
``--check`` needs onnxruntime >= 1.25 for them; an older one reports that it cannot run
the (valid) file, and the command exits with status 2.
"""
from __future__ import annotations

from typing import List

from ..engine.export import DEFAULT_OPSET, DEFORM_CONV_OPSET, SUPPORTED_OPSETS, export_weights
from ..utils.cli import add_config_arguments, add_size_argument, tool_main, tool_parser


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument("--weights", help="checkpoint (EMA weights when it has them); default: random initialisation")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    add_size_argument(parser, "test.img_size of the config")
    parser.add_argument("--batch", type=int, default=1, help="batch size of the graph (the example batch if dynamic)")
    parser.add_argument("--dynamic-batch", action="store_true", help="make the batch a dynamic axis")
    parser.add_argument("--dynamic-size", action="store_true", help="make height and width dynamic axes")
    parser.add_argument("--nms", action="store_true", help="include score threshold, NMS and --max-det in the graph")
    parser.add_argument("--conf", type=float, help="with --nms: score threshold (objectness x class; default: "
                        "test.show_thresh)")
    parser.add_argument("--iou", type=float, help="with --nms: NMS IoU threshold (default: test.nms_thresh)")
    parser.add_argument("--max-det", type=int, help="with --nms: most detections per image (default: test.max_det)")
    parser.add_argument("--half", action="store_true", help="a float16 file: weights and input (for GPU runtimes)")
    parser.add_argument("--opset", type=int, choices=SUPPORTED_OPSETS,
                        help=f"ONNX opset (default: {DEFAULT_OPSET}; {DEFORM_CONV_OPSET} for guided-anchor models, "
                             "whose DeformConv needs it)")
    parser.add_argument("--check", action="store_true", help="compare onnxruntime with PyTorch on a random input")
    return 0 if export_weights(**vars(parser.parse_args(argv))) else 1
