"""Config system: inheritance, overrides, and the errors a user meets."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_model
from yolo_asff.config import (
    BACKBONE_STAGES, Config, ConfigError, config_to_yaml, dump_config, iter_config_fields, load_config,
)

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_empty_file_gives_defaults(tmp_path):
    cfg = load_config(write(tmp_path / "empty.yaml", ""))
    assert cfg == Config()
    assert cfg.model.arch == "yolov3_asff" and cfg.train.lr == 0.001 and cfg.test.nms_thresh == 0.65


def test_bases_merge_in_order_and_child_wins(tmp_path):
    write(tmp_path / "base/a.yaml", "model: {num_classes: 20, width: 0.5}\ntrain: {lr: 0.01, epochs: 5}\n")
    write(tmp_path / "base/b.yaml", "model: {num_classes: 30}\ntrain: {loss_weights: {obj: 2.0}}\n")
    child = write(tmp_path / "child.yaml", "_base_: [base/a.yaml, base/b.yaml]\ntrain: {epochs: 7}\n")
    cfg = load_config(child)
    assert cfg.model.num_classes == 30  # b after a
    assert cfg.model.width == 0.5  # nested dicts merge: a's other keys survive
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 7  # child wins
    # mappings merge over the defaults too: the other loss terms keep their weight
    assert cfg.train.loss_weights == {"xy": 1.0, "wh": 1.0, "iou": 1.0, "obj": 2.0, "cls": 1.0, "guide": 1.0}


def test_type_error_names_the_file_that_set_the_key(tmp_path):
    write(tmp_path / "base.yaml", "train: {lr: fast}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: 'train\.lr' must be a float, got str 'fast'"):
        load_config(child)
    assert load_config(child, ["train.lr=0.5"]).train.lr == 0.5  # an override replaces the bad value


def test_single_base_string_and_nested_relative_paths(tmp_path):
    write(tmp_path / "x/_base_/m.yaml", "model: {arch: yolov3_tiny}\n")
    write(tmp_path / "x/mid.yaml", "_base_: _base_/m.yaml\n")
    cfg = load_config(write(tmp_path / "top.yaml", "_base_: x/mid.yaml\n"))
    assert cfg.model.arch == "yolov3_tiny"


def test_base_cycle_names_the_files(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle.*a\.yaml.*b\.yaml.*a\.yaml"):
        load_config(tmp_path / "a.yaml")


def test_missing_file_and_missing_base(tmp_path):
    with pytest.raises(ConfigError, match="not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    child = write(tmp_path / "c.yaml", "_base_: gone.yaml\n")
    with pytest.raises(ConfigError, match=r"gone\.yaml \(named in _base_ of .*c\.yaml\)"):
        load_config(child)


def test_unknown_key_suggests_the_closest_and_names_the_file(tmp_path):
    write(tmp_path / "base.yaml", "model: {num_clases: 3}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain: {lr: 0.01}\n")
    with pytest.raises(ConfigError) as err:
        load_config(child)
    msg = str(err.value)
    assert "base.yaml" in msg and "child.yaml" not in msg
    assert "'model.num_clases'" in msg and "did you mean 'model.num_classes'" in msg


def test_unknown_section_and_nested_key(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'train'"):
        load_config(write(tmp_path / "a.yaml", "trian: {lr: 0.1}\n"))
    with pytest.raises(ConfigError, match="did you mean 'data.train.ann_file'"):
        load_config(write(tmp_path / "b.yaml", "data: {train: {ann_fle: x.json}}\n"))


def test_opts_override_with_yaml_values(tmp_path):
    cfg = load_config(
        write(tmp_path / "a.yaml", "model: {num_classes: 3}\n"),
        ["train.lr=0.002", "model.num_classes=20", "model.anchors=[[10,13],[16,30],[33,23]]",
         "data.img_size=[320, 608]", "train.grad_clip=null", "data.train.ann_file=my/train.json"],
    )
    assert cfg.train.lr == 0.002 and cfg.model.num_classes == 20
    assert cfg.model.anchors == [[10, 13], [16, 30], [33, 23]]
    assert cfg.data.img_size == [320, 608]  # non-square sizes are fine
    assert cfg.train.grad_clip is None and cfg.data.train.ann_file == "my/train.json"


def test_bad_opts_name_opts(tmp_path):
    path = write(tmp_path / "a.yaml", "")
    with pytest.raises(ConfigError, match="--opts: unknown key 'train.learning_rate'"):
        load_config(path, ["train.learning_rate=0.1"])
    with pytest.raises(ConfigError, match="--opts.*key=value"):
        load_config(path, ["train.lr"])
    with pytest.raises(ConfigError, match="--opts: 'train.lr' must be a float"):
        load_config(path, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="--opts: unknown key 'trian'; did you mean 'train'"):
        load_config(path, ["trian.lr=0.1"])


@pytest.mark.parametrize(
    "text, key, fragment",
    [
        ("train: {lr: abc}", "train.lr", "must be a float, got str 'abc'"),
        ("train: {epochs: true}", "train.epochs", "must be an int, got bool True"),
        ("model: {fusion: 1}", "model.fusion", "must be a bool"),
        ("model: {anchors: [[1, 2], x]}", "model.anchors", "must be a list of list of float or 'auto' or null"),
        ("model: {anchors: fit}", "model.anchors", "must be a list of list of float or 'auto' or null, got str 'fit'"),
        ("model: 5", "model", "must be a mapping"),
    ],
)
def test_wrong_types_name_file_and_key(tmp_path, text, key, fragment):
    path = write(tmp_path / "t.yaml", text + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and f"'{key}'" in str(err.value) and fragment in str(err.value)


def test_int_is_accepted_for_float(tmp_path):
    cfg = load_config(write(tmp_path / "a.yaml", "train: {lr: 1, warmup_epochs: 3}\n"))
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)


@pytest.mark.parametrize(
    "text, key",
    [
        ("data: {img_size: 600}", "data.img_size"),
        ("test: {img_size: [320, 100]}", "test.img_size"),
        ("data: {img_size: [608]}", "data.img_size"),
        ("data: {mean: [0.5, 0.5]}", "data.mean"),
        ("model: {prior_prob: 1.0}", "model.prior_prob"),
        ("runtime: {device: gpu}", "runtime.device"),
        ("runtime: {device: 'cuda:x'}", "runtime.device"),
        ("data: {multiscale_range: [608, 320]}", "data.multiscale_range"),
        ("train: {lr: -0.1}", "train.lr"),
        ("model: {dropblock_keep: 0}", "model.dropblock_keep"),
        ("test: {nms_thresh: 1.5}", "test.nms_thresh"),
        ("test: {show_thresh: -0.1}", "test.show_thresh"),
        ("test: {img_size: [64, 64, 64]}", "test.img_size"),
        ("model: {num_classes: 0}", "model.num_classes"),
        ("model: {anchors: [[10, 13], [16, 30]]}", "model.anchors"),
        ("train: {loss_weights: {objectness: 1.0}}", "train.loss_weights"),
        ("train: {patience: -1}", "train.patience"),
        ("train: {time_limit: 0}", "train.time_limit"),
        ("train: {freeze: head}", "train.freeze"),
        ("train: {freeze: 7}", "train.freeze"),
        ("model: {arch: yolov3_tiny}\ntrain: {freeze: 8}", "train.freeze"),
        ("train: {freeze: -1}", "train.freeze"),
    ],
)
def test_impossible_values_name_the_key(tmp_path, text, key):
    path = write(tmp_path / "v.yaml", text + "\n")
    with pytest.raises(ConfigError, match=f"'{key}'") as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_freeze_counts_the_stages_of_each_arch_s_backbone(tmp_path):
    for arch, stages in BACKBONE_STAGES.items():
        backbone = make_model(arch, width=0.125).backbone
        assert len(backbone.stage_modules()) == stages, arch
        in_stages = {id(p) for stage in backbone.stage_modules() for p in stage.parameters()}
        assert in_stages == {id(p) for p in backbone.parameters()}, arch  # "backbone" is all of its stages
    tiny = load_config(write(tmp_path / "t.yaml", "model: {arch: yolov3_tiny}\ntrain: {freeze: 7}\n"))
    assert tiny.train.freeze == 7
    assert load_config(write(tmp_path / "b.yaml", "train: {freeze: backbone}\n")).train.freeze == "backbone"
    with pytest.raises(ConfigError, match="between 0 and 6: the yolov3_asff backbone has 6 stages"):
        load_config(write(tmp_path / "s.yaml", "train: {freeze: 9}\n"))


def test_non_square_sizes_and_cuda_index_accepted(tmp_path):
    text = "data: {img_size: [320, 608]}\ntest: {img_size: [384, 640]}\nruntime: {device: 'cuda:1'}\n"
    cfg = load_config(write(tmp_path / "a.yaml", text))
    assert cfg.data.img_size == [320, 608] and cfg.test.img_size == [384, 640] and cfg.runtime.device == "cuda:1"


def test_empty_section_means_defaults(tmp_path):
    path = write(tmp_path / "a.yaml", "model:\n  # num_classes: 3\ntrain:\n")
    assert load_config(path) == Config()
    assert load_config(path, ["model.num_classes=3"]).model.num_classes == 3


def test_choice_typo_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'yolov3_asff'"):
        load_config(write(tmp_path / "a.yaml", "model: {arch: yolov3_asf}\n"))


def test_anchors_may_be_auto(tmp_path):
    assert load_config(write(tmp_path / "a.yaml", "model: {anchors: auto}\n")).model.anchors == "auto"
    assert load_config(write(tmp_path / "b.yaml", ""), ["model.anchors=auto"]).model.anchors == "auto"


def test_tiny_takes_six_anchors(tmp_path):
    text = "model: {arch: yolov3_tiny, anchors: [[1,1],[2,2],[3,3],[4,4],[5,5],[6,6]]}\n"
    assert len(load_config(write(tmp_path / "a.yaml", text)).model.anchors) == 6


def test_a_binary_file_as_config_is_a_config_error_that_points_at_weights(tmp_path):
    checkpoint = tmp_path / "best.pth"
    checkpoint.write_bytes(b"PK\x03\x04\x80\x02\xff\xfe binary")
    with pytest.raises(ConfigError, match=r"best\.pth: not a YAML config .*--weights"):
        load_config(checkpoint)


def test_a_yolo_data_yaml_as_config_says_how_to_train_on_it(tmp_path):
    data_yaml = write(tmp_path / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    with pytest.raises(ConfigError, match=r"looks like a YOLO data YAML.*data\.format: yolo.*data\.yolo_file"):
        load_config(data_yaml)


def test_invalid_yaml_reports_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML at line 2"):
        load_config(write(tmp_path / "bad.yaml", "model:\n  arch: a: b\n"))


def test_dump_round_trip_for_every_shipped_config(tmp_path):
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path, ["data.img_size=[320, 640]"])
        out = tmp_path / f"{path.stem}.yaml"
        dump_config(cfg, out)
        assert load_config(out) == cfg, path.name


def test_source_is_recorded_but_not_dumped(tmp_path):
    path = write(tmp_path / "exp.yaml", "model: {num_classes: 5}\n")
    cfg = load_config(path)
    assert cfg.source == str(path)
    assert "source" not in config_to_yaml(cfg) and set(cfg.to_dict()) == {"model", "data", "train", "test", "runtime"}


def test_every_field_is_documented():
    fields = list(iter_config_fields())
    keys = [k for k, *_ in fields]
    assert "model.num_classes" in keys and "data.train.ann_file" in keys
    assert all(help_text for *_, help_text in fields)
    assert "source" not in keys
    assert ("train.lr", "float", 0.001) == tuple(next(f for f in fields if f[0] == "train.lr")[:3])


def test_exponent_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 reads 1e-5 as a string; users write it that way all the time.
    cfg = load_config(write(tmp_path / "a.yaml", "train: {min_lr: 1e-5}\n"), ["test.conf_thresh=1E-3"])
    assert cfg.train.min_lr == 1e-5 and cfg.test.conf_thresh == 1e-3
