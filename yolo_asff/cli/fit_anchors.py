"""Fit anchors to a config's training boxes, and say how well the current and the fitted ones cover them.

    yolo-asff anchors --config configs/mydata.yaml [--opts key=value ...] [--seed N] [--generations N]
                      [--sample N] [--json FILE] [--yaml FILE]
    (tools/fit_anchors.py in a clone)

The boxes are taken at the training input size (``data.img_size``, letterboxed as the loader does).
k-means with 1 − IoU as the distance, then an evolution, finds as many anchors as the model has
(levels × anchors per level). Printed for the current and the fitted anchors: best-possible recall
(the share of boxes whose best anchor's shape IoU exceeds ``train.anchor_thresh``, or 0.25 when it
is null), anchors above that threshold per box, and mean best IoU; then the ``model.anchors``
block to paste into the config (or write with ``--yaml``). ``--json`` writes the figures.
Deterministic for a seed (default ``runtime.seed``). ``model.anchors: auto`` runs the same fit when
training starts. Definitions: :mod:`yolo_asff.data.anchors`.
"""
from __future__ import annotations

import shlex
from typing import List

from ..config import Config, load_config
from ..data.anchors import GOOD_RECALL, AnchorFit, AnchorStats, anchors_yaml
from ..data.build import load_split
from ..engine.anchors import anchor_source, fit_for_config, level_strides, one_anchor_note
from ..utils.cli import UserError, add_config_arguments, tool_main, tool_parser
from ..utils.files import atomic_write, check_writable, write_json
from ..utils.logging import setup_logging


_COLUMNS = ("anchors", "best-possible recall", "anchors above per box", "mean best IoU")


def _row(name: str, stats: AnchorStats) -> str:
    return f"{name:<36}  {stats.bpr:>20.4f}  {stats.anchors_per_box:>21.2f}  {stats.mean_iou:>13.4f}"


def report(fit: AnchorFit, cfg: Config) -> str:
    """The figures of the current and the fitted anchors, as printed."""
    resize = "letterboxed" if cfg.data.letterbox else "stretched"
    rule = "train.anchor_thresh" if cfg.train.anchor_thresh is not None else "the rule when train.anchor_thresh is null"
    source = anchor_source(cfg)
    lines = [
        f"{fit.boxes:,} training boxes at data.img_size {cfg.data.img_size} ({resize}); {fit.skipped:,} skipped (a "
        "side at or below data.aug.min_box_size there: training drops them)",
        f"a box is covered when its best anchor has shape IoU > {fit.after.threshold:g} ({rule})",
        "",
        "{:<36}  {:>20}  {:>21}  {:>13}".format(*_COLUMNS),
    ]
    if fit.before is not None:
        lines.append(_row(f"current ({source})", fit.before))
    lines.append(_row("fitted", fit.after))
    lines.append(f"(a best-possible recall of {GOOD_RECALL} or more is good)")
    lines.append(f"fitted in {fit.seconds:.1f} s: k-means and {fit.generations} generations of evolution on "
                 f"{fit.sample:,} of the boxes, seed {fit.seed}")
    return "\n".join(lines)


@tool_main
def main(argv: List[str]) -> int:
    parser = tool_parser(__doc__)
    add_config_arguments(parser, "config YAML or shipped config name (its data and model)", "data.img_size=416",
                         required=True)
    parser.add_argument("--seed", type=int, help="random seed (default: the config's runtime.seed)")
    parser.add_argument("--generations", type=int, default=1000, help="evolution steps after k-means (0: none)")
    parser.add_argument("--sample", type=int, default=50_000, help="most boxes the fit looks at (figures use all)")
    parser.add_argument("--json", help="write the figures (bpr_before, bpr_after, mean_iou_*, anchors) here")
    parser.add_argument("--yaml", help="write the model.anchors block here too")
    args = parser.parse_args(argv)
    if args.generations < 0 or args.sample < 1:
        raise UserError("--generations must be >= 0 and --sample >= 1")
    for path, what in ((args.json, "--json file"), (args.yaml, "--yaml file")):
        if path:
            check_writable(path, what)
    cfg = load_config(args.config, args.opts)
    setup_logging()
    annotations = load_split(cfg, "train")
    fit = fit_for_config(cfg, annotations.records, seed=args.seed, sample=args.sample, generations=args.generations)
    print(report(fit, cfg))
    note = (f"fitted by yolo-asff anchors (data.img_size {cfg.data.img_size}, seed {fit.seed}): "
            f"best-possible recall {fit.after.bpr:.3f}")
    block = anchors_yaml(fit.anchors, level_strides(cfg), note)
    print(f"\nmodel.anchors for {cfg.model.arch}, smallest first, {fit.anchors.shape[1]} per level (paste into the "
          "config):\n")
    print(block)
    if one_anchor_note(cfg):
        print(f"note: {one_anchor_note(cfg)}\n")
    if args.yaml:
        atomic_write(args.yaml, lambda f: f.write(block.encode("utf-8")))
        print(f"wrote {args.yaml}")
    if args.json:
        command = shlex.join(["yolo-asff", "anchors", *argv])
        write_json(args.json, {"config": cfg.source, "opts": args.opts, "command": command, **fit.figures()})
        print(f"wrote {args.json}")
    return 0
