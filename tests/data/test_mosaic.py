"""Mosaic keeps every box on its object, applies the size rule to clipped boxes, is the same for the same seed,
and mixes up with per-box weights."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from yolo_asff.config import AugConfig
from yolo_asff.data import DetectionDataset, ImageRecord, SampleRequest
from yolo_asff.data.mosaic import Mosaic
from yolo_asff.data.transforms import TrainTransform

# Eight colours (BGR) that linear interpolation against black cannot turn into one another.
COLOURS = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 255, 255), (255, 0, 255), (255, 255, 0), (255, 255, 255),
           (0, 128, 255)]
# Four pictures of different shapes, two solid rectangles each (x1, y1, x2, y2), on black.
SCENES = [((200, 300), [(20, 30, 120, 110), (170, 90, 280, 190)]),
          ((240, 240), [(10, 10, 90, 200), (130, 50, 230, 150)]),
          ((300, 180), [(30, 20, 150, 100), (40, 160, 170, 290)]),
          ((160, 200), [(5, 40, 100, 150), (120, 8, 195, 60)])]


def pictures():
    """The four scenes as ``(image, boxes)``; the rectangle ``k`` of all of them, in order, has colour ``k``."""
    out, k = [], 0
    for (h, w), rects in SCENES:
        image = np.zeros((h, w, 3), np.uint8)
        for x1, y1, x2, y2 in rects:
            image[y1:y2, x1:x2] = COLOURS[k]
            k += 1
        out.append((image, np.array(rects, np.float32)))
    return out


def colour_mask(image, bgr):
    return np.abs(image.astype(int) - np.array(bgr)).sum(-1) < 60


def check_on_objects(image, boxes, colours, min_box_size, margin=1.5):
    """Each box's interior has its colour, no pixel of a kept colour lies outside its box, and a colour
    without a box shows at most a sliver (a side of ``min_box_size`` pixels or fewer, allowing for edges)."""
    for k, bgr in enumerate(COLOURS):
        mask = colour_mask(image, bgr)
        ys, xs = np.nonzero(mask)
        mine = boxes[colours == k]
        if not len(mine):
            if len(xs):
                sliver = min(np.ptp(xs) + 1, np.ptp(ys) + 1)
                assert sliver <= min_box_size + 2, (k, xs.min(), xs.max(), ys.min(), ys.max())
            continue
        assert len(mine) == 1
        x1, y1, x2, y2 = mine[0]
        inner = mask[int(np.ceil(y1 + margin)):int(y2 - margin), int(np.ceil(x1 + margin)):int(x2 - margin)]
        assert inner.size and inner.all(), (k, mine[0])
        assert xs.min() >= x1 - margin and xs.max() + 1 <= x2 + margin, (k, mine[0], xs.min(), xs.max())
        assert ys.min() >= y1 - margin and ys.max() + 1 <= y2 + margin, (k, mine[0], ys.min(), ys.max())


@pytest.mark.parametrize("size", [(256, 320), (416, 416)])
def test_boxes_stay_on_their_objects(size):
    mosaic = Mosaic(min_box_size=6)
    pics = pictures()
    shown = set()
    for seed in range(30):
        image, boxes, source = mosaic(pics, size, np.random.default_rng(seed))
        assert image.shape == (*size, 3) and image.dtype == np.uint8
        assert boxes.dtype == np.float32 and boxes.shape == (len(source), 4)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= size[1]).all() and (boxes[:, 3] <= size[0]).all()
        check_on_objects(image, boxes, source, min_box_size=6)
        shown.update((source // 2).tolist())
    assert shown == {0, 1, 2, 3}  # objects of every picture appear


def test_boxes_match_the_objects_to_a_pixel():
    """Each box against its object's extent (pixels at least half covered), looked for in the box's own part."""
    mosaic, pics = Mosaic(min_box_size=6), pictures()
    for seed in range(20):
        for size in ((256, 320), (608, 608)):
            image, boxes, source = mosaic(pics, size, np.random.default_rng(seed))
            parts = mosaic.parts(size, np.random.default_rng(seed))  # the same draws as the mosaic's
            for box, k in zip(boxes, source):
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                px1, py1, px2, py2 = next(p for p in parts if p[0] <= cx <= p[2] and p[1] <= cy <= p[3])
                x1, y1 = max(px1, int(box[0]) - 3), max(py1, int(box[1]) - 3)
                window = image[y1:min(py2, int(box[3]) + 4), x1:min(px2, int(box[2]) + 4)].astype(int)
                ys, xs = np.nonzero(np.abs(window - np.array(COLOURS[k])).sum(-1) < window.sum(-1))
                extent = np.array([xs.min() + x1, ys.min() + y1, xs.max() + 1 + x1, ys.max() + 1 + y1])
                assert np.abs(extent - box).max() <= 1.0, (seed, size, k, box, extent)


def test_the_size_rule_applies_to_clipped_boxes():
    pics, size = pictures(), (256, 320)
    strict, lenient = Mosaic(min_box_size=40), Mosaic(min_box_size=0)
    dropped = 0
    for seed in range(30):
        image, boxes, source = strict(pics, size, np.random.default_rng(seed))
        same_image, all_boxes, all_source = lenient(pics, size, np.random.default_rng(seed))
        assert np.array_equal(image, same_image)  # the rule drops boxes only
        assert ((boxes[:, 2:] - boxes[:, :2]) > 40).all()
        big = ((all_boxes[:, 2:] - all_boxes[:, :2]) > 40).all(1)
        assert np.array_equal(source, all_source[big]) and np.array_equal(boxes, all_boxes[big])
        dropped += int((~big).sum())
        check_on_objects(image, boxes, source, min_box_size=40)
    assert dropped > 0  # the cut at the centre did make boxes too small


def test_the_same_seed_gives_the_same_mosaic():
    mosaic, pics = Mosaic(min_box_size=6), pictures()
    first = mosaic(pics, (256, 320), np.random.default_rng(7))
    mosaic(pics, (256, 320), np.random.default_rng(8))  # other work in between changes nothing
    again = Mosaic(min_box_size=6)(pics, (256, 320), np.random.default_rng(7))  # nor another worker's
    for a, b in zip(first, mosaic(pics, (256, 320), np.random.default_rng(7))):
        assert np.array_equal(a, b)
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    assert not np.array_equal(first[0], mosaic(pics, (256, 320), np.random.default_rng(8))[0])


# ------------------------------------------------------------------------------ in the dataset


@pytest.fixture(scope="module")
def colour_records(tmp_path_factory):
    """Eight pictures with one rectangle each; the class is the colour's number."""
    folder = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(3)
    records = []
    for k, bgr in enumerate(COLOURS):
        h, w = int(rng.integers(160, 320)), int(rng.integers(160, 320))
        image = np.zeros((h, w, 3), np.uint8)
        x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
        x2, y2 = x1 + int(rng.integers(40, w - x1)), y1 + int(rng.integers(40, h - y1))
        image[y1:y2, x1:x2] = bgr
        path = folder / f"{k}.png"
        cv2.imwrite(str(path), image)
        records.append(ImageRecord(k, str(path), w, h, np.array([[x1, y1, x2, y2]], np.float32),
                                   np.array([k]), np.zeros(1, bool)))
    return records


def colour_dataset(records, mixup_prob=0.0, **aug):
    params = replace(AugConfig(photometric_prob=0, affine_degrees=0, mosaic_prob=1.0), **aug)
    return DetectionDataset(records, [str(k) for k in range(8)], TrainTransform(params, seed=0), mixup_prob=mixup_prob)


def test_mosaic_samples_keep_boxes_on_objects_through_the_whole_augmentation(colour_records):
    dataset = colour_dataset(colour_records, expand_prob=0.5, crop_prob=0.5, flip_prob=0.5, affine_prob=0.5)
    pictures_per_sample = []
    for seed in range(40):
        sample = dataset[SampleRequest(seed % 8, (256, 320), False, seed, mosaic=True)]
        image, boxes, labels = sample["image"], sample["boxes"], sample["labels"]
        assert image.shape == (256, 320, 3) and np.array_equal(sample["weights"], np.ones(len(boxes), np.float32))
        assert sample["image_id"] == seed % 8  # the requested picture names the sample
        for box, label in zip(boxes, labels):
            x1, y1, x2, y2 = box
            mask = colour_mask(image, COLOURS[label])
            inner = mask[int(np.ceil(y1 + 2)):int(y2 - 2), int(np.ceil(x1 + 2)):int(x2 - 2)]
            assert inner.size == 0 or inner.mean() > 0.97, (seed, box, label)
        pictures_per_sample.append(len(set(labels.tolist())))
    assert max(pictures_per_sample) >= 3  # several pictures in one sample: these are mosaics


def test_no_mosaic_unless_the_request_allows_it(colour_records):
    dataset = colour_dataset(colour_records, expand_prob=0, crop_prob=0, flip_prob=0, affine_prob=0)
    for seed in range(10):
        sample = dataset[SampleRequest(seed % 8, (256, 320), False, seed, mosaic=False)]
        assert sample["labels"].tolist() == [seed % 8]


def test_a_sample_depends_on_its_seed_only(colour_records):
    dataset = colour_dataset(colour_records, 0.5)
    request = SampleRequest(3, (256, 256), True, 1234, mosaic=True)
    first = dataset[request]
    for seed in range(5):  # other samples in between, as another worker's history would be
        dataset[SampleRequest(seed, (320, 320), True, seed, mosaic=True)]
    other = colour_dataset(colour_records, 0.5)
    for again in (dataset[request], other[request]):
        for key in ("image", "boxes", "labels", "weights"):
            assert np.array_equal(first[key], again[key]), key


def test_mixup_on_a_mosaic_weights_each_box_by_its_share(colour_records):
    dataset = colour_dataset(colour_records, mixup_prob=1.0, expand_prob=0, crop_prob=0, affine_prob=0)
    mixed_any = 0
    for seed in range(20):
        plain = dataset[SampleRequest(seed % 8, (256, 256), False, seed, mosaic=True)]
        mixed = dataset[SampleRequest(seed % 8, (256, 256), True, seed, mosaic=True)]
        k = len(plain["boxes"])
        # The mosaic comes first, unchanged; then the partner's boxes (a plain sample: one picture, one box at most).
        assert np.array_equal(mixed["boxes"][:k], plain["boxes"])
        assert np.array_equal(mixed["labels"][:k], plain["labels"])
        assert len(mixed["boxes"]) - k <= 1
        weights = mixed["weights"]
        if k:
            lam = weights[0]
            assert 0 < lam < 1 and np.all(weights[:k] == lam)
            np.testing.assert_allclose(weights[k:], 1 - lam, rtol=1e-6)
            mixed_any += k > 1
    assert mixed_any >= 5
