"""COCO files as annotation tools and scripts write them: every id form, text flags, encodings, file names,
sizes that disagree with the pictures. Each either scores exactly as the clean file does or stops with the
file, the key and an example entry."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from yolo_asff import load_config
from yolo_asff.data import DatasetError, build_dataset, load_coco
from yolo_asff.engine.evaluator import Evaluator

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = [{"id": 3, "name": "red"}, {"id": 7, "name": "green"}, {"id": 11, "name": "blue"}]
COLOURS = {3: (0, 0, 230), 7: (0, 200, 0), 11: (230, 0, 0)}


def write_pictures(root: Path, count: int = 6, seed: int = 0) -> dict:
    """Pictures with coloured rectangles at known places, and the clean COCO dict describing them."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    data = {"images": [], "annotations": [], "categories": copy.deepcopy(CATEGORIES)}
    for i in range(count):
        h, w = int(rng.integers(60, 100)), int(rng.integers(70, 120))
        img = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 4))):
            cat = int(rng.choice([3, 7, 11]))
            bw, bh = int(rng.integers(12, 30)), int(rng.integers(12, 30))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), COLOURS[cat], -1)
            data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": 100 + i, "category_id": cat,
                                        "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
        cv2.imwrite(str(root / "images" / f"pic_{i:03d}.png"), img)
        data["images"].append({"id": 100 + i, "file_name": f"pic_{i:03d}.png", "width": w, "height": h})
    return data


def write_config(root: Path, ann: str) -> Path:
    base = REPO / "configs" / "_base_" / "models" / "yolov3_asff.yaml"
    path = root / f"{Path(ann).stem}.yaml"
    path.write_text(f"_base_: {base}\nmodel: {{num_classes: 3, width: 0.125}}\ndata:\n  format: coco\n  root: {root}\n"
                    f"  train: {{ann_file: {ann}, img_dir: images}}\n  val: {{ann_file: {ann}, img_dir: images}}\n"
                    "  num_workers: 0\ntest: {img_size: 128, batch_size: 4}\n")
    return path


def retyped_ids(data, image=lambda i: i, category=lambda c: c, annotation=lambda a: a):
    out = copy.deepcopy(data)
    for im in out["images"]:
        im["id"] = image(im["id"])
    for cat in out["categories"]:
        cat["id"] = category(cat["id"])
    for ann in out["annotations"]:
        ann["image_id"], ann["category_id"] = image(ann["image_id"]), category(ann["category_id"])
        if annotation(ann["id"]) is None:
            del ann["id"]
        else:
            ann["id"] = annotation(ann["id"])
    return out


def without_annotation_ids(data):
    return retyped_ids(data, annotation=lambda a: None)


def mixed_spellings(data):
    """Images give numeric-string ids, annotations refer to them as ints, categories as floats."""
    out = retyped_ids(data, category=float)
    for im in out["images"]:
        im["id"] = str(im["id"])
    return out


def text_flags(data):
    out = copy.deepcopy(data)
    for ann in out["annotations"]:
        ann["iscrowd"], ann["area"] = "0", str(ann["area"])
    for im in out["images"]:
        im["width"], im["height"] = str(im["width"]), f"{im['height']}.0"
    return out


def renamed_pictures(data):
    out = copy.deepcopy(data)
    for k, im in enumerate(out["images"]):
        im["file_name"] = (f"C:\\Users\\ann\\export\\{im['file_name']}" if k % 2 else im["file_name"].upper()
                           .replace(".PNG", ".jpg"))
    return out


VARIANTS = {
    "no annotation ids": without_annotation_ids,
    "string image ids": lambda d: retyped_ids(d, image=lambda i: f"train_{i:06d}"),
    "numeric string ids": lambda d: retyped_ids(d, image=str, category=str, annotation=str),
    "mixed spellings": mixed_spellings,
    "annotation ids all 0": lambda d: retyped_ids(d, annotation=lambda a: 0),
    "annotation ids repeated": lambda d: retyped_ids(d, annotation=lambda a: 7),
    "string category ids": lambda d: retyped_ids(d, category=lambda c: f"class-{c}"),
    "huge and negative ids": lambda d: retyped_ids(d, image=lambda i: -i * 10**20, annotation=lambda a: -a),
    "text flags and sizes": text_flags,
    "file names from another machine": renamed_pictures,
}
ENCODINGS = {"utf-8-sig": "UTF-8 with a byte-order mark", "utf-16": "UTF-16"}


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("quirks")
    data = write_pictures(root)
    (root / "clean.json").write_text(json.dumps(data))
    return root, data


def score(root: Path, ann: str, make_oracle, dets: Path = None, backend: str = "pycocotools"):
    cfg = load_config(write_config(root, ann), [f"test.coco_backend={backend}"])
    dataset = build_dataset(cfg, "val")
    model = make_oracle(dataset, cfg.data.mean, cfg.data.std)
    return dataset, Evaluator(cfg, dataset).evaluate(model, progress=False, dets_path=dets)


@pytest.mark.parametrize("variant", list(VARIANTS) + list(ENCODINGS))
def test_quirky_ids_score_exactly_as_the_clean_file(clean, make_oracle, variant, tmp_path):
    root, data = clean
    _, reference = score(root, "clean.json", make_oracle)
    assert 0.2 < reference["AP"] < 0.9  # a score with room to be wrong in either direction
    name = f"v{abs(hash(variant))}.json"
    if variant in ENCODINGS:
        (root / name).write_bytes(json.dumps(data).encode(variant))
    else:
        (root / name).write_text(json.dumps(VARIANTS[variant](data)))
    dataset, metrics = score(root, name, make_oracle, dets=tmp_path / "dets.json")
    for key in ("AP", "AP50", "AP75", "APs", "APm", "AR100"):
        assert metrics[key] == pytest.approx(reference[key], abs=1e-12, nan_ok=True), key
    assert metrics["per_class"] == pytest.approx(reference["per_class"], abs=1e-12)
    assert sum(len(r.boxes) for r in dataset.records) == len(data["annotations"])
    # results name images and categories as the file does, so that the user's own tools can read them
    written = VARIANTS.get(variant, lambda d: d)(data)
    file_image_ids = {json.dumps(im["id"]) for im in written["images"]}
    file_category_ids = {json.dumps(c["id"]) for c in written["categories"]}
    dets = json.loads((tmp_path / "dets.json").read_text())
    assert dets and all(json.dumps(d["image_id"]) in file_image_ids for d in dets)
    assert all(json.dumps(d["category_id"]) in file_category_ids for d in dets)


def test_string_ids_in_results_are_scored_by_pycocotools_against_the_file(clean, make_oracle, tmp_path):
    """The user's own pycocotools run on the results we wrote for a file with string ids gives our AP."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root, data = clean
    quirky = retyped_ids(data, image=lambda i: f"img-{i}")
    (root / "strings.json").write_text(json.dumps(quirky))
    _, ours = score(root, "strings.json", make_oracle, dets=tmp_path / "dets.json")
    gt = COCO(str(root / "strings.json"))
    evaluation = COCOeval(gt, gt.loadRes(str(tmp_path / "dets.json")), "bbox")
    evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(ours["AP"], abs=1e-9)


@pytest.mark.parametrize("variant", ["clean", "numeric string ids", "huge and negative ids", "text flags and sizes"])
def test_faster_coco_eval_scores_quirky_files_as_pycocotools(clean, make_oracle, variant):
    """test.coco_backend=faster: the same 12 numbers and per-class AP (noisy detections, scores neither 0 nor 1)."""
    root, data = clean
    name = f"faster_{abs(hash(variant))}.json"
    (root / name).write_text(json.dumps(VARIANTS.get(variant, lambda d: d)(data)))
    _, reference = score(root, name, make_oracle)
    _, faster = score(root, name, make_oracle, backend="faster")
    assert 0.2 < reference["AP"] < 0.9
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"):
        assert faster[key] == pytest.approx(reference[key], abs=1e-4, nan_ok=True), key
    for key in ("per_class", "per_class_AP50"):
        assert faster[key] == pytest.approx(reference[key], abs=1e-4, nan_ok=True), key


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"][1].update(id=d["images"][0]["id"]), r"images\[0\].*images\[1\].*same id 100.*'images'"),
    (lambda d: d["categories"][1].update(id=3), r"categories\[0\] and categories\[1\] have the same id 3.*'red'.*'green'"),
    (lambda d: d["categories"][1].update(name="red"), r"categories\[0\] and categories\[1\] are both named 'red'"),
])
def test_ids_that_cannot_be_told_apart_stop_naming_file_key_and_entry(clean, change, message):
    root, data = clean
    bad = copy.deepcopy(data)
    change(bad)
    (root / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(DatasetError, match=message) as info:
        load_coco(root / "bad.json", root / "images")
    assert "bad.json" in str(info.value)


def test_repeated_identical_entries_are_merged_and_counted(clean):
    root, data = clean
    twice = copy.deepcopy(data)
    twice["images"].append(copy.deepcopy(twice["images"][0]))
    twice["categories"].append(copy.deepcopy(twice["categories"][0]))
    (root / "twice.json").write_text(json.dumps(twice))
    loaded = load_coco(root / "twice.json", root / "images")
    assert len(loaded.records) == len(data["images"]) and loaded.class_names == ["red", "green", "blue"]
    assert loaded.problems.counts["image listed twice (merged)"] == 1
    assert loaded.problems.counts["category listed twice (merged)"] == 1


def write_resized(root: Path) -> tuple:
    """A picture annotated at 200 × 100 and saved at 100 × 50 afterwards, its red square at (120..160, 40..80)."""
    big = np.zeros((100, 200, 3), np.uint8)
    cv2.rectangle(big, (120, 40), (159, 79), (0, 0, 230), -1)
    cv2.imwrite(str(root / "images" / "resized.png"), cv2.resize(big, (100, 50), interpolation=cv2.INTER_AREA))
    return {"id": 1, "file_name": "resized.png", "width": 200, "height": 100}, [120, 40, 40, 40]


def write_rotated(root: Path) -> tuple:
    """A JPEG stored 200 × 100 with EXIF orientation 6 (OpenCV turns it to 100 × 200), annotated as stored."""
    stored = np.zeros((100, 200, 3), np.uint8)
    stored[40:80, 150:190] = (230, 0, 0)  # red, RGB
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(root / "images" / "rotated.jpg", exif=exif.tobytes(), quality=95)
    return {"id": 2, "file_name": "rotated.jpg", "width": 200, "height": 100}, [150, 40, 40, 40]


def write_unsized(root: Path) -> tuple:
    """A picture whose annotation says 0 × 0 (as some exporters write)."""
    img = np.zeros((90, 120, 3), np.uint8)
    cv2.rectangle(img, (70, 30), (99, 59), (0, 0, 230), -1)
    cv2.imwrite(str(root / "images" / "unsized.png"), img)
    return {"id": 3, "file_name": "unsized.png", "width": 0, "height": 0}, [70, 30, 30, 30]


def test_boxes_land_on_their_objects_whatever_the_annotated_size_says(tmp_path):
    (tmp_path / "images").mkdir()
    entries = [write_resized(tmp_path), write_rotated(tmp_path), write_unsized(tmp_path)]
    data = {"images": [e[0] for e in entries], "categories": [{"id": 1, "name": "red"}],
            "annotations": [{"id": k + 1, "image_id": e[0]["id"], "category_id": 1, "bbox": e[1], "iscrowd": 0}
                            for k, e in enumerate(entries)]}
    (tmp_path / "sizes.json").write_text(json.dumps(data))
    cfg = load_config(write_config(tmp_path, "sizes.json"), ["model.num_classes=1"])
    dataset = build_dataset(cfg, "val")
    counts = load_coco(tmp_path / "sizes.json", tmp_path / "images").problems.counts
    assert any("resized after annotation" in k for k in counts)
    assert any("stored frame of an EXIF-rotated picture" in k for k in counts)
    assert any("no image size" in k for k in counts)
    assert len(dataset) == 3
    for i in range(len(dataset)):
        sample = dataset[i]
        (x1, y1, x2, y2), = sample["boxes"].round().astype(int)
        inside = sample["image"][y1 + 2:y2 - 2, x1 + 2:x2 - 2].reshape(-1, 3).astype(int)
        assert inside[:, 2].mean() > 150 and inside[:, :2].mean() < 60, dataset.records[i].name  # red, in BGR


def test_ambiguous_size_skips_the_picture_and_names_it(tmp_path):
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((50, 100, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "images" / "b.png"), np.zeros((50, 100, 3), np.uint8))
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100},
                       {"id": 2, "file_name": "b.png", "width": 100, "height": 50}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 20, 20]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 20, 20]}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    loaded = load_coco(tmp_path / "ann.json", tmp_path / "images")
    assert [r.name for r in loaded.records] == ["b.png"]
    kind = next(k for k in loaded.problems.counts if "image skipped" in k)
    assert "fit both" in kind and "a.png" in loaded.problems.examples[kind][0]


def test_boxes_from_segmentations_and_a_warning_for_corner_style_bboxes(clean):
    root, data = clean
    polygons = copy.deepcopy(data)
    for ann in polygons["annotations"]:
        x, y, w, h = ann.pop("bbox")
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    (root / "polygons.json").write_text(json.dumps(polygons))
    loaded = load_coco(root / "polygons.json", root / "images")
    reference = load_coco(root / "clean.json", root / "images")
    for a, b in zip(loaded.records, reference.records):
        np.testing.assert_allclose(a.boxes, b.boxes)
    assert loaded.problems.counts["annotation without a bbox (taken from its segmentation)"] == len(data["annotations"])
    corners = copy.deepcopy(data)
    for ann in corners["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["bbox"] = [x, y, x + w, y + h]  # the exporter wrote corners
    (root / "corners.json").write_text(json.dumps(corners))
    counts = load_coco(root / "corners.json", root / "images").problems.counts
    assert any(k.startswith("bbox values look like [x1, y1, x2, y2] corners") for k in counts)
    assert not any(k.startswith("bbox values look like") for k in reference.problems.counts)


def test_trusted_sizes_do_not_drop_pictures_and_results_go_back_to_the_file_frame(tmp_path, make_oracle):
    (tmp_path / "images").mkdir()
    resized, bbox = write_resized(tmp_path)
    off_by_one = {"id": 5, "file_name": "off.png", "width": 121, "height": 90}
    cv2.imwrite(str(tmp_path / "images" / "off.png"), np.zeros((90, 120, 3), np.uint8))
    data = {"images": [resized, off_by_one], "categories": [{"id": 1, "name": "red"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": bbox},
                            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [10, 10, 30, 30]}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    assert len(load_coco(tmp_path / "ann.json", tmp_path / "images", check_files=False).records) == 2
    checked = load_coco(tmp_path / "ann.json", tmp_path / "images")
    assert len(checked.records) == 2 and checked.records[0].annotation_scale == (0.5, 0.5)
    # detections written for the user's own tools are in the file's 200 x 100 frame, not the picture's
    cfg = load_config(write_config(tmp_path, "ann.json"), ["model.num_classes=1"])
    dataset = build_dataset(cfg, "val")

    def exact(record, boxes, num_classes, name):
        return np.array([[*b, 0.9, 0] for b in boxes], np.float64).reshape(-1, 6)

    metrics = Evaluator(cfg, dataset).evaluate(make_oracle(dataset, cfg.data.mean, cfg.data.std, exact),
                                               progress=False, dets_path=tmp_path / "dets.json")
    assert metrics["AP"] == pytest.approx(1.0)
    dets = {d["image_id"]: d["bbox"] for d in json.loads((tmp_path / "dets.json").read_text())}
    np.testing.assert_allclose(dets[1], bbox, atol=0.6)
    np.testing.assert_allclose(dets[5], [10, 10, 30, 30], atol=0.6)


def test_square_exif_pictures_follow_how_the_dataset_was_annotated(tmp_path):
    """A square phone photo's sizes cannot tell its frame; the dataset's non-square ones can."""
    (tmp_path / "images").mkdir()
    rotated, bbox = write_rotated(tmp_path)  # 200 x 100 stored, annotated as stored
    square = np.zeros((100, 100, 3), np.uint8)
    square[10:40, 60:90] = (230, 0, 0)  # red (RGB) in the stored frame's top right
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(square).save(tmp_path / "images" / "square.jpg", exif=exif.tobytes(), quality=95)
    data = {"images": [rotated, {"id": 9, "file_name": "square.jpg", "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "red"}],
            "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": bbox},
                            {"id": 2, "image_id": 9, "category_id": 1, "bbox": [60, 10, 30, 30]}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    cfg = load_config(write_config(tmp_path, "ann.json"), ["model.num_classes=1"])
    dataset = build_dataset(cfg, "val")
    for i, record in enumerate(dataset.records):
        sample = dataset[i]
        (x1, y1, x2, y2), = sample["boxes"].round().astype(int)
        assert sample["image"][y1 + 2:y2 - 2, x1 + 2:x2 - 2, 2].mean() > 150, record.name
    kind = next(k for k in load_coco(tmp_path / "ann.json", tmp_path / "images").problems.counts
                if k.startswith("EXIF orientation the sizes cannot check"))
    assert "read without rotation" in kind


def test_a_supercategory_only_category_is_not_a_class(clean):
    root, data = clean
    roboflow = copy.deepcopy(data)
    roboflow["categories"] = [{"id": 0, "name": "shapes-xyz", "supercategory": "none"}] + [
        {**c, "supercategory": "shapes-xyz"} for c in roboflow["categories"]]
    (root / "roboflow.json").write_text(json.dumps(roboflow))
    loaded = load_coco(root / "roboflow.json", root / "images")
    assert loaded.class_names == ["red", "green", "blue"]
    assert any("supercategory" in k for k in loaded.problems.counts)
