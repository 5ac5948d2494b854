"""The VOC metric: hand-worked cases (difficult boxes, duplicates, best-box rule, no +1), and a reference loop."""
from __future__ import annotations

import numpy as np
import pytest

from yolo_asff.engine.voc_eval import IOU_THRESHOLDS, voc_ap, voc_evaluate


def evaluate(dets, gts, num_classes=1, **kwargs):
    """dets: [(image, box, score, label)], gts: [(image, box, label, difficult)]."""
    d = list(zip(*dets)) if dets else [[], np.zeros((0, 4)), [], []]
    g = list(zip(*gts)) if gts else [[], np.zeros((0, 4)), [], []]
    return voc_evaluate(d[0], np.array(d[1], float), d[2], d[3], g[0], np.array(g[1], float), g[2], g[3],
                        num_classes, **kwargs)


G1, G2, G3 = [10, 10, 50, 50], [60, 60, 90, 90], [0, 0, 30, 30]


def test_difficult_boxes_and_duplicates_hand_worked():
    """Image 0 holds G1 and a difficult G2; image 1 holds G3. Two boxes count (npos = 2).

    In score order: d1 on G1 → TP; d2 on the difficult G2 → ignored (neither TP nor FP);
    d3 on G1 again → FP (duplicate); d4 on nothing → FP; d5 on G3 → TP.
    Counted sequence TP FP FP TP: recall .5 .5 .5 1, precision 1 .5 1/3 .5.
    Area (VOC2010+): envelope 1 up to recall .5, then .5 up to 1: AP = .5·1 + .5·.5 = 0.75.
    11-point (VOC2007): recall ≥ 0, .1, … .5 (6 points) reach precision 1; ≥ .6 … 1 (5 points)
    only .5: AP = (6·1 + 5·.5) / 11 = 8.5 / 11.
    Were d2 a false positive, the end precision would be 2/5 and the area AP 0.7.
    """
    dets = [(0, G1, 0.9, 0), (0, G2, 0.8, 0), (0, [11, 10, 50, 50], 0.7, 0), (1, [40, 40, 70, 70], 0.6, 0),
            (1, G3, 0.5, 0)]
    gts = [(0, G1, 0, False), (0, G2, 0, True), (1, G3, 0, False)]
    m = evaluate(dets, gts)
    assert m.num_gt.tolist() == [2]
    assert m.ap_at(0.5)[0] == pytest.approx(0.75)
    assert m.ap_at(0.5, use_07_metric=True)[0] == pytest.approx(8.5 / 11)
    assert m.map_at(0.5) == pytest.approx(0.75) and m.map_at(0.5, True) == pytest.approx(8.5 / 11)


def test_a_detection_only_competes_for_its_best_box():
    """H1 and H2 overlap. e1 sits on H1 (TP). e2 overlaps H1 by 0.82 and H2 by 0.67: its best box H1 is
    taken, so VOC calls it a duplicate (FP) rather than matching H2 (COCO would).
    Recall .5 .5, precision 1 .5: area AP = .5; 11-point = 6 / 11 (only recall ≥ 0 … .5 reached)."""
    h1, h2 = [0, 0, 100, 100], [30, 0, 130, 100]
    e2 = [10, 0, 110, 100]  # IoU 90/110 = .82 with h1, 80/120 = .67 with h2
    m = evaluate([(0, h1, 0.9, 0), (0, e2, 0.8, 0)], [(0, h1, 0, False), (0, h2, 0, False)])
    assert m.ap_at(0.5)[0] == pytest.approx(0.5)
    assert m.ap_at(0.5, True)[0] == pytest.approx(6 / 11)


def test_iou_uses_continuous_coordinates_without_plus_one():
    """Detection [0, 0, 10, 10] on box [0, 0, 10, 4.8]: IoU 48 / 100 = 0.48 → FP (AP 0).
    With the devkit's +1 on these continuous coordinates it would be 11·5.8 / 121 = 0.53 → TP."""
    m = evaluate([(0, [0, 0, 10, 10], 0.9, 0)], [(0, [0, 0, 10, 4.8], 0, False)])
    assert m.ap_at(0.5)[0] == 0.0
    m = evaluate([(0, [0, 0, 10, 10], 0.9, 0)], [(0, [0, 0, 10, 5.2], 0, False)])  # 0.52 → TP
    assert m.ap_at(0.5)[0] == 1.0


def test_mean_over_iou_thresholds_and_classes_without_ground_truth():
    """One box found with IoU 0.72 (box [0,0,100,100] vs [0,0,100,72]): TP above 0.50 … 0.70, five of the ten
    thresholds, so the COCO-style mean is 0.5. Class 1 has no ground truth: NaN, left out of the means.
    Class 2 has a box but no detection: 0, kept in the means."""
    dets = [(0, [0, 0, 100, 100], 0.9, 0), (0, [0, 0, 5, 5], 0.3, 1)]
    gts = [(0, [0, 0, 100, 72], 0, False), (1, [0, 0, 20, 20], 2, False)]
    m = evaluate(dets, gts, num_classes=3)
    np.testing.assert_allclose(m.iou_thresholds, IOU_THRESHOLDS)
    assert m.ap[0].tolist() == [1.0] * 5 + [0.0] * 5
    assert np.isnan(m.ap[1]).all() and m.num_gt.tolist() == [1, 0, 1]
    assert m.ap_at(0.5)[2] == 0.0
    assert m.map_coco() == pytest.approx((0.5 + 0.0) / 2)
    assert m.map_at(0.5) == pytest.approx(0.5) and m.map_at(0.75) == pytest.approx(0.0)


def test_no_detections_and_wrong_input():
    m = evaluate([], [(0, G1, 0, False)])
    assert m.ap_at(0.5).tolist() == [0.0] and m.map_coco() == 0.0
    with pytest.raises(ValueError, match="det_labels"):
        evaluate([(0, G1, 0.9, 3)], [(0, G1, 0, False)])


def test_voc_ap_on_a_known_curve():
    recall, precision = np.array([0.25, 0.5, 0.5, 1.0]), np.array([1.0, 1.0, 0.5, 0.6])
    assert voc_ap(recall, precision) == pytest.approx(0.5 * 1.0 + 0.5 * 0.6)
    # 11-point: recall ≥ 0 … .5 → 1 (6 points), ≥ .6 … 1 → .6 (5 points)
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx((6 + 5 * 0.6) / 11)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0 and voc_ap(np.zeros(0), np.zeros(0), True) == 0.0


def reference_voc_eval(dets, gts, cls, thresh, use_07):
    """The VOC devkit's voc_eval loop (py-faster-rcnn), on continuous coordinates (no +1)."""
    recs = {}
    for image, box, label, difficult in gts:
        if label == cls:
            r = recs.setdefault(image, {"boxes": [], "difficult": [], "det": []})
            r["boxes"].append(box), r["difficult"].append(difficult), r["det"].append(False)
    npos = sum(not d for r in recs.values() for d in r["difficult"])
    mine = sorted([d for d in dets if d[3] == cls], key=lambda d: -d[2])
    tp, fp = np.zeros(len(mine)), np.zeros(len(mine))
    for i, (image, bb, _, _) in enumerate(mine):
        r = recs.get(image)
        ovmax, jmax = -np.inf, -1
        if r is not None:
            bbgt = np.array(r["boxes"], float)
            iw = np.maximum(np.minimum(bbgt[:, 2], bb[2]) - np.maximum(bbgt[:, 0], bb[0]), 0)
            ih = np.maximum(np.minimum(bbgt[:, 3], bb[3]) - np.maximum(bbgt[:, 1], bb[1]), 0)
            inter = iw * ih
            uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1]) - inter
            ov = inter / uni
            ovmax, jmax = ov.max(), int(ov.argmax())
        if ovmax > thresh:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[i], r["det"][jmax] = 1, True
                else:
                    fp[i] = 1
        else:
            fp[i] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        return sum((prec[rec >= t].max() if (rec >= t).any() else 0) for t in np.arange(0, 1.1, 0.1)) / 11
    mrec, mpre = np.concatenate(([0], rec, [1])), np.concatenate(([0], prec, [0]))
    for i in range(len(mpre) - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def test_matches_the_devkit_loop_on_random_data():
    rng = np.random.default_rng(0)
    gts, dets = [], []
    for image in range(12):
        for _ in range(rng.integers(0, 6)):
            xy = rng.uniform(0, 80, 2)
            box = [*xy, *(xy + rng.uniform(8, 40, 2))]
            gts.append((image, box, int(rng.integers(3)), bool(rng.random() < 0.2)))
            for _ in range(rng.integers(0, 3)):  # jittered copies: TPs, duplicates, near misses
                jitter = np.array(box) + rng.normal(0, 4, 4)
                dets.append((image, list(jitter), float(rng.random()), int(rng.integers(3)) if rng.random() < 0.2
                             else gts[-1][2]))
        for _ in range(rng.integers(0, 3)):  # background
            xy = rng.uniform(0, 80, 2)
            dets.append((image, [*xy, *(xy + 10)], float(rng.random()), int(rng.integers(3))))
    m = evaluate(dets, gts, num_classes=3)
    assert m.num_gt.min() > 0 and 0.1 < m.map_at(0.5) < 0.95
    for cls in range(3):
        for thresh in (0.5, 0.75):
            for use_07 in (False, True):
                expected = reference_voc_eval(dets, gts, cls, thresh, use_07)
                assert m.ap_at(thresh, use_07)[cls] == pytest.approx(expected, abs=1e-12), (cls, thresh, use_07)
