"""Typed configuration: YAML files with ``_base_`` inheritance, ``--opts`` overrides, validation.

A config file has up to five sections, ``model``, ``data``, ``train``, ``test`` and
``runtime``, each a dataclass below. ``_base_: file`` or ``_base_: [a, b]`` (paths
relative to the file naming them) are merged first, in order, the child winning;
dicts merge recursively, lists and scalars replace. Every user-caused problem
raises :class:`ConfigError` naming the file (or ``--opts``) and the dotted key.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import yaml

from .errors import YoloAsffError
from .utils.device import device_problem
from .utils.sizes import size_problem

__all__ = [
    "AUTO_ANCHORS",
    "AugConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RuntimeConfig",
    "SplitConfig",
    "TestConfig",
    "TrainConfig",
    "config_from_dict",
    "config_names",
    "config_to_yaml",
    "dump_config",
    "iter_config_fields",
    "load_config",
    "output_levels",
    "resolve_config_path",
    "shipped_configs",
]

Size = Union[int, List[int]]
# model.anchors: fitted to the training boxes when a run starts (yolo_asff/engine/anchors.py), then stored as numbers.
AUTO_ANCHORS = "auto"


def _f(default: Any, help: str) -> Any:
    """A dataclass field with a default (copied when mutable) and a help text."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    """The detector: architecture, classes, anchors and the ASFF/ASFF* options."""

    arch: str = _f("yolov3_asff", "yolov3 (Darknet's neck), yolov3_asff (the ASFF paper's SPP pyramid) or yolov3_tiny")
    num_classes: int = _f(80, "number of object classes")
    head: str = _f(
        "yolov3",
        "yolov3 (a plain 1x1 conv per level) or guided (the official ASFF head: guided anchors, an anchor-free "
        "slot and a deformable feature adaption; needed for the released checkpoints)",
    )
    anchors: Optional[Union[List[List[float]], Literal["auto"]]] = _f(
        None,
        "anchors (w, h) in input pixels, smallest first, split evenly over the levels; null = the default of the "
        "arch and head (the guided head's official set differs from YOLOv3's in its ninth anchor); auto = fitted "
        "to the training boxes when training starts (as `yolo-asff anchors` does) and saved as numbers in the "
        "run's config.yaml and checkpoints (a model built before that uses the default)",
    )
    fusion: bool = _f(True, "ASFF fusion on (off = the paper's baseline); yolov3_asff only")
    fusion_channels: int = _f(16, "width of the 1x1 convs that compute the fusion weights (8 with RFB in the paper)")
    spp: bool = _f(True, "SPP block in the ASFF pyramid")
    rfb: bool = _f(False, "RFB block before each head (ASFF*)")
    dropblock: bool = _f(False, "DropBlock in the ASFF pyramid (ASFF*)")
    dropblock_size: int = _f(3, "initial DropBlock block size (the schedule changes it)")
    dropblock_keep: float = _f(0.9, "DropBlock keep probability")
    width: float = _f(1.0, "channel width multiplier (small models for tests and CPU)")
    norm: str = _f("bn", "bn, or syncbn to synchronise BatchNorm across processes under torch.distributed")
    act: str = _f("leaky", "activation: leaky (0.1), relu or silu")
    bn_momentum: float = _f(0.1, "BatchNorm momentum (PyTorch convention)")
    bn_eps: float = _f(1e-5, "BatchNorm epsilon")
    prior_prob: float = _f(0.01, "initial objectness and class probability set through the output-conv bias")


@dataclass
class SplitConfig:
    """One dataset split: a COCO annotation file and image folder, or VOC (year, image-set) pairs."""

    ann_file: str = _f("", "COCO: annotation JSON (relative paths are under data.root)")
    img_dir: str = _f("", "COCO: image folder (relative paths are under data.root)")
    splits: List[List[Union[int, str]]] = _f([], "VOC: [year, image-set] pairs, e.g. [[2007, trainval], [2012, test]]")


@dataclass
class AugConfig:
    """Training augmentation parameters (``data.aug``)."""

    photometric_prob: float = _f(0.5, "probability of each photometric jitter (brightness, contrast, saturation, hue)")
    brightness: float = _f(32.0, "brightness shift, +- pixel values")
    contrast: List[float] = _f([0.5, 1.5], "contrast factor range")
    saturation: List[float] = _f([0.5, 1.5], "saturation factor range")
    hue: float = _f(18.0, "hue shift, +- degrees")
    expand_prob: float = _f(0.5, "probability of zooming out onto a mean-filled canvas")
    expand_max_ratio: float = _f(4.0, "largest zoom-out canvas, times the image size")
    crop_prob: float = _f(1.0, "probability of trying SSD's min-IoU random crop")
    crop_min_ious: List[float] = _f([0.1, 0.3, 0.5, 0.7, 0.9], "minimum IoUs the crop picks from (or no crop)")
    flip_prob: float = _f(0.5, "horizontal flip probability")
    affine_prob: float = _f(0.5, "probability of a small random affine transform")
    affine_degrees: float = _f(0.0, "largest rotation, degrees")
    affine_translate: float = _f(0.1, "largest shift, fraction of the image size")
    affine_scale: List[float] = _f([0.9, 1.1], "scale range")
    min_box_size: float = _f(6.0, "boxes with a side of this many pixels or fewer after augmentation are dropped")
    mosaic_prob: float = _f(
        0.0,
        "share of training samples that are a mosaic of four pictures (2x2 around a random centre) while mosaic is "
        "on; 0 = off (see train.no_mosaic_epochs)",
    )


@dataclass
class DataConfig:
    """Dataset location and format, input sizes, loading and normalisation."""

    format: str = _f("coco", "dataset format: coco, voc or yolo (YOLO txt labels and a data YAML)")
    builtin: bool = _f(False, "data.root holds the built-in dataset: generate it there on first use")
    builtin_kind: str = _f("shapes", "which built-in dataset: shapes (the main job's six shapes on photographs) or "
                           "glyphs (five letters, small, on synthetic patterns: a second kind to check a recipe on)")
    root: str = _f("data/coco", "COCO: folder that relative paths start from; VOC: the VOCdevkit folder")
    yolo_file: str = _f("", "YOLO txt: the data YAML (path, train, val, names); relative paths start at data.root")
    train: SplitConfig = field(
        default_factory=lambda: SplitConfig("annotations/instances_train2017.json", "train2017", []),
        metadata={"help": "training split"},
    )
    val: SplitConfig = field(
        default_factory=lambda: SplitConfig("annotations/instances_val2017.json", "val2017", []),
        metadata={"help": "validation split"},
    )
    class_names: Optional[List[str]] = _f(None, "class names (VOC, or a subset); null = from the dataset")
    keep_empty_images: bool = _f(True, "train on images without boxes too (they teach background)")
    check_images: bool = _f(
        True,
        "read every picture's header at start-up: find it (another extension or letter case), skip what OpenCV "
        "cannot decode, and settle the annotated size against the picture's; false trusts the annotation file",
    )
    use_difficult: bool = _f(False, "VOC: train on 'difficult' objects too (evaluation always ignores them)")
    img_size: Size = _f(608, "training input size, an int or [h, w], multiple of 32")
    multiscale_range: Optional[List[int]] = _f([320, 608], "[min, max] training size (step 32); null = fixed size")
    multiscale_interval: int = _f(10, "iterations between input-size changes")
    num_workers: int = _f(4, "data-loading worker processes per GPU (at most the CPUs this process may use)")
    letterbox: bool = _f(True, "keep the aspect ratio and pad (true) or stretch (false)")
    aug: AugConfig = field(default_factory=AugConfig, metadata={"help": "training augmentation"})
    mean: List[float] = _f([0.485, 0.456, 0.406], "RGB mean subtracted after /255")
    std: List[float] = _f([0.229, 0.224, 0.225], "RGB std divided by after /255")


@dataclass
class TrainConfig:
    """Optimiser, schedule, training tricks and loss settings."""

    epochs: int = _f(300, "training epochs")
    batch_size: int = _f(16, "images per process and step")
    nominal_batch_size: int = _f(64, "gradients are accumulated up to this many images per optimizer step")
    lr: float = _f(0.001, "learning rate at ref_batch_size images per step; scaled linearly to the real total")
    ref_batch_size: int = _f(64, "batch size that lr is given for")
    optimizer: str = _f("sgd", "sgd (the paper's recipe) or adamw (faster from scratch on small data)")
    momentum: float = _f(0.9, "SGD momentum (AdamW: beta1)")
    nesterov: bool = _f(False, "Nesterov momentum")
    weight_decay: float = _f(5e-4, "weight decay, conv weights only")
    warmup_epochs: float = _f(5.0, "warm-up length; lr rises as progress^4")
    scheduler: str = _f("cosine", "cosine or step")
    cosine_start_epoch: int = _f(20, "cosine decay starts here (constant lr before)")
    cosine_end_epoch: int = _f(270, "cosine decay reaches min_lr here")
    min_lr: float = _f(1e-5, "final learning rate")
    steps: List[int] = _f([240, 270], "step schedule: epochs where lr is multiplied by gamma")
    gamma: float = _f(0.1, "step schedule factor")
    amp: bool = _f(True, "mixed precision on GPU (bf16 where supported, else fp16)")
    channels_last: bool = _f(True, "model and batches in channels-last (NHWC) memory format: faster convolutions with "
                             "cuDNN and with oneDNN on the CPU (1.4-1.6x per step at width 0.125 on the reference CPU)")
    compile: bool = _f(False, "torch.compile the model for training, one graph per input size (each compiled at its "
                       "first step, logged with its time); for GPUs: on a 2-core CPU it does not pay (docs/BENCHMARKS.md)")
    ema: bool = _f(True, "keep an exponential moving average of the weights")
    ema_decay: float = _f(0.9998, "EMA decay")
    grad_clip: Optional[float] = _f(None, "clip the gradient norm to this; null = off")
    nonfinite_patience: int = _f(20, "stop the run after this many steps in a row with a non-finite loss (each is skipped)")
    mixup: bool = _f(True, "mixup of two images with Beta(1.5, 1.5)")
    mixup_prob: float = _f(0.5, "share of training samples that are mixed up while mixup is on")
    no_mixup_epochs: int = _f(30, "no mixup in the last N epochs")
    no_mosaic_epochs: int = _f(15, "no mosaic (data.aug.mosaic_prob) in the last N epochs")
    label_smooth: bool = _f(True, "label smoothing of the class targets")
    fixed_size_epochs: int = _f(10, "last N epochs at data.img_size without multi-scale")
    dropblock_schedule: List[List[int]] = _f(
        [[5, 1, 3, 5], [80, 3, 5, 7], [150, 7, 7, 7]],
        "ASFF*: [from epoch, block size at stride 32, 16, 8] rows",
    )
    iou_loss: str = _f("iou", "iou (1 - IoU^2) or giou")
    loss_weights: Dict[str, float] = _f(
        {"xy": 1.0, "wh": 1.0, "iou": 1.0, "obj": 1.0, "cls": 1.0, "guide": 1.0},
        "weight of each loss term (guide: the guided head's anchor-shape loss)",
    )
    ignore_thresh: float = _f(0.7, "predictions with IoU above this with a ground-truth box get no objectness loss")
    anchor_thresh: Optional[float] = _f(
        None, "also assign a box to every other anchor whose shape IoU with it exceeds this; null = best anchor only"
    )
    eval_interval: int = _f(10, "evaluate every N epochs")
    save_interval: int = _f(1, "save the last checkpoint every N epochs")
    patience: Optional[int] = _f(
        None, "stop early after this many evaluations in a row without a better AP (best.pth is kept); null or 0 = off"
    )
    time_limit: Optional[float] = _f(
        None,
        "stop cleanly after this many hours of training and evaluation, summed over the run's resumes (checkpoint, "
        "final evaluation, metrics.json); null = off. A resume with the budget spent only finishes: raise it to go on",
    )
    freeze: Optional[Union[int, str]] = _f(
        None,
        "fine-tuning on small data: backbone (all of it) or K, the first K backbone stages (Darknet-53: 6, the stem "
        "and five downsampling stages; YOLOv3-tiny: 7, its 3x3 convs), weights and BatchNorm statistics; null or 0 = "
        "none",
    )


@dataclass
class TestConfig:
    """Evaluation and inference: input size, thresholds, batch size."""

    img_size: Size = _f(608, "test input size, an int or [h, w], multiple of 32")
    conf_thresh: float = _f(0.001, "score threshold of evaluation (0.001: mAP counts every detection)")
    nms_thresh: float = _f(0.65, "class-aware NMS IoU threshold (evaluation, demo, export)")
    show_thresh: float = _f(
        0.3, "score threshold of detections meant to be looked at or used: the demo, ONNX export with NMS, "
        "TensorBoard pictures, the Predictor (like mmdetection's show_score_thr)")
    max_det: int = _f(100, "most detections kept per image")
    batch_size: int = _f(8, "images per evaluation batch")
    metric: str = _f(
        "auto",
        "auto (COCO mAP with pycocotools for coco and yolo data, the VOC protocol for voc), coco, voc (area under "
        "the curve) or voc07 (11-point)",
    )
    coco_backend: str = _f(
        "pycocotools",
        "COCOeval of pycocotools (the reference) or faster (faster-coco-eval's C++ one: the same numbers, "
        "pip install faster-coco-eval)",
    )


@dataclass
class RuntimeConfig:
    """Where runs are written, seeding, device and logging."""

    output_dir: str = _f("runs", "where runs/<name>/ is written")
    name: str = _f("", "run name; empty = the config file's name")
    seed: int = _f(0, "random seed")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N")
    log_interval: int = _f(20, "iterations between log lines")
    deterministic: bool = _f(False, "deterministic algorithms (slower; for reproducible runs)")
    threads: int = _f(0, "torch's CPU threads per process (0: PyTorch's default); fewer than free cores on a shared "
                      "machine")


@dataclass
class Config:
    """The whole resolved config: five sections, and the file it was loaded from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # Set by load_config (runs are named after it); not a YAML key, so it is neither dumped nor compared.
    source: str = field(default="", init=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        """The five sections as plain dicts and lists (what :func:`config_to_yaml` writes)."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}


SECTIONS = ("model", "data", "train", "test", "runtime")


class ConfigError(YoloAsffError, ValueError):
    """A config file or override is wrong; the message says where and what to do."""


CHOICES: Dict[str, Tuple[str, ...]] = {
    "model.arch": ("yolov3", "yolov3_asff", "yolov3_tiny"),
    "model.head": ("yolov3", "guided"),
    "model.norm": ("bn", "syncbn"),
    "model.act": ("leaky", "relu", "silu"),
    "data.format": ("coco", "voc", "yolo"),
    "data.builtin_kind": ("shapes", "glyphs"),
    "test.metric": ("auto", "coco", "voc", "voc07"),
    "train.scheduler": ("cosine", "step"),
    "train.optimizer": ("sgd", "adamw"),
    "train.iou_loss": ("iou", "giou"),
    "test.coco_backend": ("pycocotools", "faster"),
}
# Stages of each arch's backbone that train.freeze may freeze (models/darknet.py, stage_modules()).
BACKBONE_STAGES = {"yolov3": 6, "yolov3_asff": 6, "yolov3_tiny": 7}

# The keys train.loss_weights may name; models/loss.py takes its terms from here ("guide": the guided head only).
LOSS_TERMS = ("xy", "wh", "iou", "obj", "cls", "guide")
OPTS = "--opts"


# ----------------------------------------------------------------------------- reading files


def _read_yaml(path: Path, referrer: Optional[str]) -> Dict[str, Any]:
    """The mapping in ``path`` ({} if empty); ``referrer`` is the file whose ``_base_`` named it."""
    if not path.is_file():
        where = f" (named in _base_ of {referrer})" if referrer else ""
        raise ConfigError(f"config file not found: {path}{where}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a YAML config (not UTF-8 text: a checkpoint or a picture?); pass a .yaml file "
                          "or a shipped config's name to --config (weights go to --weights)") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def _leaf_keys(tree: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted keys of the non-mapping values in ``tree``."""
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _under(key: str, dotted: str) -> bool:
    """Whether dotted ``key`` is ``dotted`` itself or lies below it."""
    return key == dotted or key.startswith(dotted + ".")


def _merge(dst: Dict[str, Any], src: Mapping[str, Any], dst_prov: Dict[str, str], src_prov: Mapping[str, str],
           prefix: str = "") -> None:
    """Merge ``src`` into ``dst`` (dicts recursively, the rest replaced), carrying each leaf's source file."""
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, dst_prov, src_prov, dotted + ".")
            continue
        dst[key] = copy.deepcopy(value)
        for stale in [k for k in dst_prov if _under(k, dotted)]:
            del dst_prov[stale]
        dst_prov.update({k: v for k, v in src_prov.items() if _under(k, dotted)})


def _load_tree(path: Path, stack: Tuple[Path, ...] = ()) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """The merged tree of ``path`` and its ``_base_`` files, and each leaf key's source file."""
    resolved = path.resolve() if path.exists() else path
    if resolved in stack:
        cycle = " -> ".join(str(p) for p in (*stack[stack.index(resolved):], resolved))
        raise ConfigError(f"_base_ cycle: {cycle}")
    data = _read_yaml(resolved, str(stack[-1]) if stack else None)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of file names")
    tree: Dict[str, Any] = {}
    prov: Dict[str, str] = {}
    for base in bases:
        # relative to the file naming it; else a shipped config (a user's file outside the clone may say
        # _base_: yolov3_asff_coco.yaml, or _base_/models/yolov3_asff.yaml)
        base_path = resolved.parent / base
        if not base_path.exists():
            shipped = resolve_config_path(base)
            base_path = shipped if shipped.is_file() else base_path
        base_tree, base_prov = _load_tree(base_path, (*stack, resolved))
        _merge(tree, base_tree, prov, base_prov)
    _merge(tree, data, prov, {key: str(path) for key in _leaf_keys(data)})
    return tree, prov


# ----------------------------------------------------------------------------- typing


def _type_name(tp: Any) -> str:
    """A type annotation in words, for error messages and docs ("list of int or null")."""
    origin = typing.get_origin(tp)
    if origin is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        name = " or ".join(_type_name(a) for a in args)
        return name + (" or null" if len(args) < len(typing.get_args(tp)) else "")
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, List):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (dict, Dict):
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    return getattr(tp, "__name__", str(tp))


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` converted to type ``tp``, or raise TypeError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Union:
        if value is None and type(None) in typing.get_args(tp):
            return None
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg)
            except TypeError:
                pass
        raise TypeError
    if origin is Literal:
        if isinstance(value, str) and value in typing.get_args(tp):
            return value
        raise TypeError
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise TypeError
        (item,) = typing.get_args(tp)
        return [_coerce(v, item) for v in value]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise TypeError
        _, item = typing.get_args(tp)
        return {str(k): _coerce(v, item) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
        raise TypeError
    if tp is str:
        if isinstance(value, str):
            return value
        raise TypeError
    raise TypeError


def _source(prov: Mapping[str, str], key: str) -> str:
    """The file that set ``key`` (or a key under it, or its nearest parent)."""
    below = [v for k, v in prov.items() if k.startswith(key + ".")]
    if key in prov or below:
        return prov.get(key, below[-1] if below else "")
    while "." in key:
        key = key.rpartition(".")[0]
        if key in prov:
            return prov[key]
    return "<defaults>"


def _a(noun: str) -> str:
    """``noun`` with its indefinite article ("a float", "an int")."""
    return ("an " if noun[:1] in "aeiou" else "a ") + noun


_YOLO_DATA_KEYS = ("names", "nc", "train", "val", "path")  # top-level keys of a YOLO (ultralytics) data YAML


def _unknown_key(key: str, valid: Sequence[str], prefix: str, prov: Mapping[str, str]) -> ConfigError:
    """The error for ``prefix + key`` not being one of ``valid``, with the closest valid key."""
    dotted = f"{prefix}{key}"
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.6)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys here: {', '.join(valid)}"
    if not prefix and key in _YOLO_DATA_KEYS:
        hint += (". This looks like a YOLO data YAML (path, train, val, names): it is data, not a config; train on it "
                 "with a config that sets data.format: yolo and data.yolo_file: <that file>, e.g. --config builtin "
                 "--opts data.builtin=false data.format=yolo data.root=. data.yolo_file=<that file> model.num_classes=<N>")
    return ConfigError(f"{_source(prov, dotted)}: unknown key '{dotted}'{hint}")


def _build(cls: Any, data: Mapping[str, Any], prov: Mapping[str, str], prefix: str = "") -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and types."""
    if data is None:  # a section whose keys are all commented out reads as null
        data = {}
    if not isinstance(data, dict):
        name = prefix.rstrip(".")
        raise ConfigError(f"{_source(prov, name)}: '{name}' must be a mapping of keys (indented under it), got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(key, list(fields), prefix, prov)
        dotted = f"{prefix}{key}"
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, prov, dotted + ".")
            continue
        try:
            kwargs[key] = _coerce(value, tp)
        except TypeError:
            got = f"{type(value).__name__} {value!r}"
            raise ConfigError(f"{_source(prov, dotted)}: '{dotted}' must be {_a(_type_name(tp))}, got {got}") from None
    return cls(**kwargs)


# ----------------------------------------------------------------------------- values


def _check_choices(cfg: Config, fail: Callable[[str, str], None]) -> None:
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in choices:
            close = difflib.get_close_matches(value, choices, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            fail(key, f"must be one of {', '.join(choices)}, got '{value}'{hint}")
    if device_problem(cfg.runtime.device):
        fail("runtime.device", device_problem(cfg.runtime.device))


def _check_inputs(cfg: Config, fail: Callable[[str, str], None]) -> None:
    d = cfg.data
    for key, size in (("data.img_size", d.img_size), ("test.img_size", cfg.test.img_size)):
        if size_problem(size):
            fail(key, size_problem(size))
    lo_hi = d.multiscale_range
    if lo_hi is not None and (len(lo_hi) != 2 or any(size_problem(s) for s in lo_hi) or lo_hi[0] > lo_hi[1]):
        fail("data.multiscale_range", f"must be [min, max], multiples of 32 with min <= max (or null); got {lo_hi}")
    for key, values in (("data.mean", d.mean), ("data.std", d.std)):
        if len(values) != 3:
            fail(key, f"needs one value per RGB channel (three), got {values}")
    if min(d.std) <= 0:
        fail("data.std", f"values must be > 0 (they divide the image), got {d.std}")
    if d.format == "yolo" and not d.yolo_file:
        fail("data.yolo_file", "must name the dataset's YAML (path, train, val, names) when data.format is yolo")


def _check_ranges(cfg: Config, fail: Callable[[str, str], None]) -> None:
    m, t = cfg.model, cfg.train
    positive = {
        "model.num_classes": m.num_classes, "model.width": m.width, "model.fusion_channels": m.fusion_channels,
        "model.dropblock_size": m.dropblock_size, "model.bn_eps": m.bn_eps,
        "train.lr": t.lr, "train.epochs": t.epochs, "train.batch_size": t.batch_size,
        "train.nominal_batch_size": t.nominal_batch_size, "train.ref_batch_size": t.ref_batch_size,
        "train.eval_interval": t.eval_interval, "train.save_interval": t.save_interval,
        "train.nonfinite_patience": t.nonfinite_patience,
        "data.multiscale_interval": cfg.data.multiscale_interval, "test.max_det": cfg.test.max_det,
        "test.batch_size": cfg.test.batch_size, "runtime.log_interval": cfg.runtime.log_interval,
    }
    for key, value in positive.items():
        if value <= 0:
            fail(key, f"must be > 0, got {value}")
    non_negative = {
        "train.weight_decay": t.weight_decay, "train.warmup_epochs": t.warmup_epochs, "train.min_lr": t.min_lr,
        "train.no_mixup_epochs": t.no_mixup_epochs, "train.fixed_size_epochs": t.fixed_size_epochs,
        "train.no_mosaic_epochs": t.no_mosaic_epochs,
        "data.num_workers": cfg.data.num_workers, "runtime.threads": cfg.runtime.threads,
    }
    for key, value in non_negative.items():
        if value < 0:
            fail(key, f"must be >= 0, got {value}")
    # (low, high, low included, high included). prior_prob sets a bias of logit(p): 0 and 1 are infinite.
    intervals = {
        "model.dropblock_keep": (m.dropblock_keep, False, True), "model.prior_prob": (m.prior_prob, False, False),
        "model.bn_momentum": (m.bn_momentum, False, False), "test.conf_thresh": (cfg.test.conf_thresh, True, True),
        "test.show_thresh": (cfg.test.show_thresh, True, True),
        "test.nms_thresh": (cfg.test.nms_thresh, True, True), "train.ignore_thresh": (t.ignore_thresh, True, True),
        "train.momentum": (t.momentum, True, True), "train.mixup_prob": (t.mixup_prob, True, True),
        "train.ema_decay": (t.ema_decay, True, True), "data.aug.mosaic_prob": (cfg.data.aug.mosaic_prob, True, True),
    }
    if t.anchor_thresh is not None:
        intervals["train.anchor_thresh"] = (t.anchor_thresh, False, True)
    for key, (value, low_in, high_in) in intervals.items():
        if not ((0 <= value if low_in else 0 < value) and (value <= 1 if high_in else value < 1)):
            fail(key, f"must be in {'[' if low_in else '('}0, 1{']' if high_in else ')'}, got {value}")


def output_levels(arch: str) -> int:
    """How many output levels (strides) ``model.arch`` has: 2 for yolov3_tiny, 3 for the others."""
    return 2 if arch == "yolov3_tiny" else 3


def _check_lists(cfg: Config, fail: Callable[[str, str], None]) -> None:
    m = cfg.model
    levels = output_levels(m.arch)
    if isinstance(m.anchors, list):
        if not m.anchors or any(len(a) != 2 or min(a) <= 0 for a in m.anchors) or len(m.anchors) % levels:
            fail("model.anchors", f"must be [w, h] pairs of positive numbers, a multiple of {levels} of them "
                 f"for {m.arch} ({levels} output levels), auto (fitted at the start of training), or null for the "
                 f"default; got {m.anchors}")
    unknown_terms = sorted(set(cfg.train.loss_weights) - set(LOSS_TERMS))
    if unknown_terms:
        fail("train.loss_weights", f"has unknown terms {unknown_terms}; valid: {', '.join(LOSS_TERMS)}")
    for row in cfg.train.dropblock_schedule:
        if len(row) != 4 or row[0] < 0 or min(row[1:]) < 1:
            fail("train.dropblock_schedule", f"rows must be [from_epoch, size32, size16, size8], sizes >= 1; got {row}")


def _check_stopping(cfg: Config, fail: Callable[[str, str], None]) -> None:
    t = cfg.train
    if t.patience is not None and t.patience < 0:
        fail("train.patience", f"must be a number of evaluations >= 0 (0 or null: off), got {t.patience}")
    if t.time_limit is not None and not t.time_limit > 0:
        fail("train.time_limit", f"must be a number of hours > 0 (null: off), got {t.time_limit}")
    stages = BACKBONE_STAGES[cfg.model.arch]
    freeze = t.freeze
    if isinstance(freeze, str) and freeze != "backbone":
        fail("train.freeze", f"must be backbone, a number of backbone stages (0 to {stages}) or null, got '{freeze}'")
    if isinstance(freeze, int) and not 0 <= freeze <= stages:
        fail("train.freeze", f"must be between 0 and {stages}: the {cfg.model.arch} backbone has {stages} stages "
             f"(freeze: backbone freezes all of them); got {freeze}")


def _validate(cfg: Config, prov: Mapping[str, str]) -> None:
    """Check values that are well typed but impossible; raise ConfigError naming the key and its file."""

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{_source(prov, key)}: '{key}' {message}")

    _check_choices(cfg, fail)
    _check_inputs(cfg, fail)
    _check_ranges(cfg, fail)
    _check_lists(cfg, fail)
    _check_stopping(cfg, fail)


# ----------------------------------------------------------------------------- public API


def _apply_opts(tree: Dict[str, Any], opts: Sequence[str], prov: Dict[str, str]) -> None:
    """Set each ``key=value`` of ``opts`` in ``tree`` (values parsed as YAML), recording ``--opts`` as the source."""
    for opt in opts:
        key, sep, text = opt.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{OPTS}: '{opt}' is not of the form key=value (e.g. train.lr=0.002)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{OPTS}: cannot parse the value of '{opt}': {exc}") from exc
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:  # absent, or a section left empty in the file
                node[part] = {}
            child = node[part]
            if not isinstance(child, dict):
                raise ConfigError(f"{OPTS}: '{key}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
        for stale in [k for k in prov if _under(k, key)]:
            del prov[stale]
        prov[key] = OPTS


def _resolve(file_tree: Mapping[str, Any], file_prov: Mapping[str, str], opts: Sequence[str], source: str) -> Config:
    """The config of a merged tree of sections (``file_prov``: each leaf key's source), with ``opts`` applied."""
    # The defaults are the lowest base, so a partial mapping such as train.loss_weights: {obj: 2.0}
    # keeps the other terms instead of dropping them.
    tree, prov = Config().to_dict(), {}
    _merge(tree, file_tree, prov, file_prov)
    _apply_opts(tree, opts, prov)
    for key in tree:
        if key not in SECTIONS:
            raise _unknown_key(key, SECTIONS, "", prov)
    cfg = _build(Config, tree, prov)
    _validate(cfg, prov)
    cfg.source = source
    return cfg


def shipped_configs() -> Optional[Path]:
    """The folder of the configs that come with yolo-asff: inside the installed package, or ``configs/``
    of a clone (an editable install)."""
    here = Path(__file__).resolve().parent
    for folder in (here / "configs", here.parent / "configs"):
        if (folder / "_base_").is_dir():
            return folder
    return None


def config_names() -> List[str]:
    """The shipped configs by name (``builtin``, ``yolov3_asff_coco``, ``official/yolov3_asff_coco``, ...)."""
    folder = shipped_configs()
    if folder is None:
        return []
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")
                  if "_base_" not in p.parts)


def resolve_config_path(path: Union[str, os.PathLike]) -> Path:
    """A config given as a path, or as the name of a shipped config (``yolov3_asff_coco``, with or without
    ``.yaml``); a path that exists wins. Unknown names come back as given (the loader then says so)."""
    given = Path(path)
    if given.is_file() or given.is_absolute():
        return given
    folder = shipped_configs()
    parts = given.parts[1:] if given.parts[:1] == ("configs",) else given.parts  # "configs/x.yaml" of a clone
    relative = Path(*parts) if parts else given
    for candidate in ((folder / relative, folder / f"{relative}.yaml") if folder else ()):
        if candidate.is_file():
            return candidate
    return given


def load_config(path: Union[str, os.PathLike], opts: Sequence[str] = ()) -> Config:
    """Load a config file (with its ``_base_`` files), apply ``opts`` and validate.

    Args:
        path: the YAML file, or the name of a shipped config (:func:`config_names`).
        opts: overrides ``"section.key=value"``, values parsed as YAML.

    Raises:
        ConfigError: naming the file or ``--opts``, the key and what is wrong.
    """
    resolved = resolve_config_path(path)
    if not resolved.exists() and not Path(path).suffix and config_names():
        close = difflib.get_close_matches(str(path), config_names(), n=3)
        raise ConfigError(f"config not found: {path} is neither a file nor a shipped config"
                          + (f"; did you mean {', '.join(close)}?" if close else
                             f"; shipped configs: {', '.join(config_names())}"))
    file_tree, file_prov = _load_tree(resolved)
    return _resolve(file_tree, file_prov, opts, str(resolved))


def config_from_dict(tree: Mapping[str, Any], opts: Sequence[str] = (), source: str = "<dict>") -> Config:
    """A config from a mapping of sections (what :meth:`Config.to_dict` gives, e.g. a checkpoint's
    saved config), with ``opts`` applied and validated like :func:`load_config`.

    Args:
        tree: ``{section: {key: value}}``; missing keys take their defaults. Not modified.
        opts: overrides ``"section.key=value"``, values parsed as YAML.
        source: what errors name as the origin of the mapping's keys; also the config's ``source``.

    Raises:
        ConfigError: naming ``source`` or ``--opts``, the key and what is wrong.
    """
    if not isinstance(tree, Mapping):
        raise ConfigError(f"{source}: the config must be a mapping of sections, got {type(tree).__name__}")
    return _resolve(tree, {key: source for key in _leaf_keys(tree)}, opts, source)


class _Dumper(yaml.SafeDumper):
    """Sections in block style, lists (sizes, anchors, splits) on one line."""


_Dumper.add_representer(list, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))


def config_to_yaml(cfg: Config) -> str:
    """The resolved config as YAML text that :func:`load_config` reads back to an equal config."""
    return yaml.dump(cfg.to_dict(), Dumper=_Dumper, sort_keys=False)


def dump_config(cfg: Config, path: Union[str, os.PathLike]) -> None:
    """Write the resolved config to ``path`` (runs keep the config they used)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(config_to_yaml(cfg), encoding="utf-8")


def iter_config_fields(cls: Any = Config, prefix: str = "", defaults: Any = None) -> Iterator[Tuple[str, str, Any, str]]:
    """Yield ``(dotted key, type, default, help)`` for every config field, for generated docs.

    Defaults are read from a default instance, so nested sections report the values they really
    start with (``data.train.ann_file`` is COCO's train2017 file, not the bare split's empty string).
    """
    defaults = defaults if defaults is not None else cls()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:  # Config.source: set by load_config, not a YAML key
            continue
        tp = hints[f.name]
        default = getattr(defaults, f.name)
        if dataclasses.is_dataclass(tp):
            yield from iter_config_fields(tp, f"{prefix}{f.name}.", default)
        else:
            yield f"{prefix}{f.name}", _type_name(tp), copy.deepcopy(default), f.metadata.get("help", "")
