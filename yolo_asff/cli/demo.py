"""Detect objects in pictures or video and write annotated copies.

    yolo-asff demo --weights runs/builtin/best.pth --source data/builtin/video.mp4 \\
        [--config builtin] [--out runs/demo] [--conf 0.3] [--size S | --size H W] [--fusion-maps] \\
        [--save-txt] [--save-json]

--source is an image, a folder or a quoted glob of images ("shots/*/*.png"), a video file
(.mp4 .avi .mov .mkv ...) or a webcam index (0). A checkpoint brings its own config and class names;
--config is needed for a Darknet file or for random weights (a smoke test). Outputs go under --out
(a numbered --out-2, -3 ... when it already holds files) mirroring the input's folders; a video is
written as VP8 WebM where this OpenCV can (browsers play it), else MPEG-4. --fusion-maps also writes
<name>_fusion.jpg: the ASFF weights α, β, γ of every level over the picture (for a video, every
--fusion-every frames). Unreadable images in a folder and broken video frames are skipped and counted.
--conf and --nms default to the config's test.show_thresh and test.nms_thresh. The job itself is
yolo_asff.engine.demo.run_demo.
"""
from __future__ import annotations

from typing import List

from ..engine.demo import run_demo
from ..utils.cli import add_config_arguments, add_size_argument, tool_main, tool_parser


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument("--weights", help="yolo-asff checkpoint (.pth) or Darknet .weights "
                        "(omitted: random weights, a smoke test)")
    parser.add_argument("--source", required=True, help="image, folder, glob, video file or webcam index")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo; numbered when taken)")
    parser.add_argument("--conf", type=float, help="score threshold (default: test.show_thresh, 0.3)")
    parser.add_argument("--nms", type=float, help="NMS IoU threshold (default: test.nms_thresh, 0.65)")
    add_size_argument(parser, "test.img_size")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: runtime.device)")
    parser.add_argument("--half", action="store_true", help="float16 autocast (CUDA only)")
    parser.add_argument("--graphed", action="store_true", help="forward + decode + NMS as one CUDA graph (CPU: one "
                        "compiled function), pictures one at a time; the first one waits for the compile")
    parser.add_argument("--fusion-maps", action="store_true", help="also write ASFF weight heat maps")
    parser.add_argument("--fusion-every", type=int, default=30, help="video: fusion maps every N frames (default 30)")
    parser.add_argument("--max-frames", type=int, default=0, help="video/webcam: stop after N frames (0 = all)")
    parser.add_argument("--save-txt", action="store_true", help="also write YOLO txt labels (with scores) under "
                        "OUT/labels/")
    parser.add_argument("--save-json", action="store_true", help="also write OUT/detections.json (COCO results)")
    parser.add_argument("--codec", choices=("auto", "vp8", "mp4v"), default="auto",
                        help="video codec: auto (VP8 WebM, which browsers play, where OpenCV has it), vp8, or mp4v "
                             "(faster to encode)")
    run_demo(**vars(parser.parse_args(argv)))
    return 0
