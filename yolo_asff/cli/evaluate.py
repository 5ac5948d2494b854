"""Evaluate weights on a validation set: COCO AP (pycocotools) or VOC mAP.

    yolo-asff eval --weights runs/builtin/best.pth              # the config the checkpoint holds
    yolo-asff eval --config builtin --weights runs/builtin/best.pth
        [--size 608 | --size H W] [--conf 0.001] [--nms 0.65] [--batch 8] [--half] [--device cpu|cuda]
        [--json metrics.json] [--dets detections.json] [--plots DIR] [--testdev] [--opts key=value ...]

``--weights`` is a yolo-asff checkpoint (its EMA weights when it has them), a Darknet ``.weights``
file (then ``--config`` is needed) or an official ASFF release. A checkpoint's own config gives the
model, the validation set, and the input size and normalisation it was trained with; a ``--config``
given as well must build the same model. Prints the COCO table and the per-class table (images,
instances, precision and recall at the best-F1 confidence, AP50, AP); ``--json`` writes the numbers
(fractions 0-1, null where the data has nothing of that kind), ``--dets`` the detections in COCO
results format, ``--plots`` (default: the folder of ``--json``) the precision-recall and F1 curves
and the confusion matrices as ``PR_curve.png``, ``F1_curve.png``, ``confusion_matrix.png`` and
``confusion_matrix_normalized.png``. ``--testdev`` (or an annotation file without annotations)
only writes the detections, e.g. for the COCO test-dev server. ``--opts test.coco_backend=faster`` scores
with faster-coco-eval instead of pycocotools: the same numbers, in a fraction of the time on large sets.
The job itself is :func:`yolo_asff.engine.evaluate_weights.evaluate_weights`.
"""
from __future__ import annotations

from typing import List

from ..engine.evaluate_weights import evaluate_weights
from ..utils.cli import add_config_arguments, add_size_argument, tool_main, tool_parser


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser, "config YAML or shipped config name (model and data.val); default: the one the "
                         "checkpoint holds", "data.root=/data/coco")
    parser.add_argument("--weights", required=True, help="yolo-asff checkpoint (.pth) or Darknet .weights")
    add_size_argument(parser, "test.img_size")
    parser.add_argument("--conf", type=float, help="score threshold (default: test.conf_thresh)")
    parser.add_argument("--nms", type=float, help="NMS IoU threshold (default: test.nms_thresh)")
    parser.add_argument("--batch", type=int, help="images per batch (default: test.batch_size)")
    parser.add_argument("--half", action="store_true", help="float16 autocast (GPU only)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: runtime.device)")
    parser.add_argument("--json", dest="json_path", help="write the metrics here as JSON")
    parser.add_argument("--dets", help="write the detections here (COCO results JSON)")
    parser.add_argument("--plots", help="write the PR and F1 curves and the confusion matrices (PNG) in this folder "
                        "(default: the folder of --json)")
    parser.add_argument("--testdev", action="store_true", help="no ground truth: write the detections only")
    evaluate_weights(**vars(parser.parse_args(argv)))
    return 0
