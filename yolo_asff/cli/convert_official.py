"""Convert a released checkpoint of the official ASFF code into a yolo-asff checkpoint.

    python tools/convert_official.py weights/yolov3_asff.pth weights/yolov3_asff_converted.pth [--force]

The input is a state_dict as the official code saves it (fp16 or fp32, optionally with
``module.`` prefixes or in a ``{'model': ...}`` wrapper); the variant (YOLOv3 baseline,
ASFF or ASFF*) and the class count are read from its keys and shapes. Anything else is
refused with a message naming the first key that does not belong. The output is our
checkpoint format (float32) with the matching config inside, plus that config as
``OUT.yaml`` beside it, ready for ``tools/eval.py --config OUT.yaml --weights OUT``.
(``--weights`` of train/eval/demo/export also accepts the official file directly.)
The library function is :func:`yolo_asff.io.official.convert_official_checkpoint`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..io.official import convert_official_checkpoint
from ..utils.cli import UserError, tool_main, tool_parser


def convert(src: Path, dst: Path, force: bool = False) -> int:
    if dst.exists() and src.exists() and dst.resolve() == src.resolve():
        raise UserError("OUT must differ from IN: the official file is kept as it is")
    if dst.exists() and not force:
        raise UserError(f"{dst} exists; pass --force to overwrite it")
    converted, config_path = convert_official_checkpoint(src, dst)
    params = sum(t.numel() for name, t in converted.state_dict.items() if not name.endswith(("running_mean",
                 "running_var", "num_batches_tracked")))
    dtype = str(converted.source_dtype).replace("torch.", "")
    print(f"{src}: official ASFF {converted.variant}, {converted.num_classes} classes, "
          f"{len(converted.state_dict)} tensors in {dtype}, {params:,} parameters")
    print(f"wrote {dst} (float32) and its config {config_path}")
    print(f"evaluate with: python tools/eval.py --config {config_path} --weights {dst}")
    return 0


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__.split("\n\n")[0])
    parser.add_argument("src", metavar="IN", type=Path, help="official ASFF checkpoint (.pth)")
    parser.add_argument("dst", metavar="OUT", type=Path, help="yolo-asff checkpoint to write (.pth)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT")
    args = parser.parse_args(argv)
    return convert(args.src, args.dst, args.force)
