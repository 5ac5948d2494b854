"""postprocess: score threshold, class-aware NMS, max_det, and images of a batch kept apart; postprocess_fixed:
the same detections with fixed shapes and no host sync (torchvision's batched_nms is the reference)."""
from __future__ import annotations

import pytest
import torch
from torchvision.ops import batched_nms

from yolo_asff.engine.postprocess import (
    Detections, greedy_nms_fixed, postprocess, postprocess_fixed, unpad_detections,
)
from yolo_asff.utils.host_sync import count_host_syncs


def rows(*preds, num_classes=3):
    """(N, 5 + C) decoded rows from (box, objectness, class, class probability)."""
    out = torch.zeros(len(preds), 5 + num_classes)
    for i, (box, obj, cls, prob) in enumerate(preds):
        out[i, :4] = torch.tensor(box, dtype=torch.float32)
        out[i, 4] = obj
        out[i, 5 + cls] = prob
    return out


A = [10, 10, 50, 50]
A_NEAR = [12, 10, 52, 50]  # IoU with A: 38·40 / (2·1600 − 1520) = 0.905
B = [100, 100, 140, 140]  # far from A


def test_overlapping_boxes_of_one_class_are_suppressed():
    decoded = rows((A, 1.0, 0, 0.9), (A_NEAR, 1.0, 0, 0.8), (B, 1.0, 0, 0.7))[None]
    (det,) = postprocess(decoded, conf_thresh=0.01, nms_thresh=0.65)
    assert isinstance(det, Detections)
    torch.testing.assert_close(det.boxes, torch.tensor([A, B], dtype=torch.float32))
    torch.testing.assert_close(det.scores, torch.tensor([0.9, 0.7]))
    assert det.labels.dtype == torch.int64 and det.labels.tolist() == [0, 0]


def test_overlapping_boxes_of_different_classes_are_both_kept():
    decoded = rows((A, 1.0, 0, 0.9), (A_NEAR, 1.0, 2, 0.8))[None]
    (det,) = postprocess(decoded, conf_thresh=0.01, nms_thresh=0.65)
    assert det.labels.tolist() == [0, 2] and det.scores.tolist() == pytest.approx([0.9, 0.8])


def test_nms_threshold_decides():
    decoded = rows((A, 1.0, 0, 0.9), (A_NEAR, 1.0, 0, 0.8))[None]
    assert len(postprocess(decoded, 0.01, nms_thresh=0.95)[0].scores) == 2  # IoU 0.905 is below 0.95
    assert len(postprocess(decoded, 0.01, nms_thresh=0.9)[0].scores) == 1


def test_score_is_objectness_times_class_probability_above_the_threshold():
    decoded = rows((A, 0.5, 1, 0.5), (B, 0.5, 1, 0.7))[None]  # scores 0.25 and 0.35
    (det,) = postprocess(decoded, conf_thresh=0.3, nms_thresh=0.65)
    assert det.scores.tolist() == pytest.approx([0.35]) and det.boxes.tolist() == [B]
    assert len(postprocess(decoded, conf_thresh=0.4)[0].scores) == 0


def test_the_best_class_of_a_box_is_its_label():
    decoded = rows((A, 1.0, 0, 0.3))
    decoded[0, 5 + 2] = 0.6
    (det,) = postprocess(decoded[None], conf_thresh=0.01)
    assert det.labels.tolist() == [2] and det.scores.tolist() == pytest.approx([0.6])


def test_max_det_keeps_the_highest_scores_in_order():
    boxes = [[50 * i, 0, 50 * i + 40, 40] for i in range(10)]  # no overlaps
    scores = torch.linspace(0.1, 0.9, 10)
    decoded = rows(*[(b, 1.0, 0, float(s)) for b, s in zip(boxes, scores)])[None]
    (det,) = postprocess(decoded, conf_thresh=0.01, max_det=3)
    assert det.scores.tolist() == pytest.approx([0.9, scores[8].item(), scores[7].item()])
    assert det.boxes.tolist() == [boxes[9], boxes[8], boxes[7]]


def test_images_of_a_batch_never_suppress_each_other():
    first = rows((A, 1.0, 0, 0.9), (B, 1.0, 1, 0.5))
    second = rows((A_NEAR, 1.0, 0, 0.8), (B, 0.001, 1, 0.5))  # same class, IoU 0.9 with first's A
    empty = rows((A, 0.0, 0, 0.9), (B, 0.0, 0, 0.9))
    out = postprocess(torch.stack([first, empty, second]), conf_thresh=0.01, nms_thresh=0.65)
    assert len(out) == 3
    assert out[0].boxes.tolist() == [A, B] and out[0].labels.tolist() == [0, 1]
    assert out[1].boxes.shape == (0, 4) and out[1].scores.shape == (0,) and out[1].labels.shape == (0,)
    assert out[2].boxes.tolist() == [A_NEAR] and out[2].scores.tolist() == pytest.approx([0.8])


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(B, N, 5 \+ C\)"):
        postprocess(torch.zeros(10, 8))


def random_decoded(batch, n, num_classes, seed, clusters=12):
    """Decoded rows with many overlaps (boxes jittered around a few centres), tied scores (objectness
    and class probabilities on coarse grids) and many classes."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, clusters, 2, generator=g) * 300
    pick = torch.randint(0, clusters, (batch, n), generator=g)
    xy = centres.gather(1, pick[..., None].expand(-1, -1, 2)) + torch.randn(batch, n, 2, generator=g) * 6
    wh = 20 + torch.rand(batch, n, 2, generator=g) * 40
    out = torch.zeros(batch, n, 5 + num_classes)
    out[..., :2], out[..., 2:4] = xy - wh / 2, xy + wh / 2
    out[..., 4] = torch.randint(1, 6, (batch, n), generator=g) / 5
    out[..., 5:] = torch.randint(0, 5, (batch, n, num_classes), generator=g) / 4
    return out


def reference_nms(decoded, conf_thresh, nms_thresh, max_det):
    """Per image, straight from torchvision: candidates in box order, batched_nms over classes, the first max_det."""
    out = []
    for rows in decoded:
        best, cls = (rows[:, 4:5] * rows[:, 5:]).max(-1)
        idx = (best > conf_thresh).nonzero().squeeze(1)
        keep = batched_nms(rows[idx, :4], best[idx], cls[idx], nms_thresh)[:max_det]
        out.append(Detections(rows[idx[keep], :4], best[idx[keep]], cls[idx[keep]]))
    return out


def assert_same(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert torch.equal(g.boxes, w.boxes) and torch.equal(g.scores, w.scores) and torch.equal(g.labels, w.labels)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("nms_thresh", [0.3, 0.65])
def test_fixed_shape_nms_equals_batched_nms_with_ties_and_many_classes(seed, nms_thresh):
    decoded = random_decoded(3, 400, 40, seed)
    want = reference_nms(decoded, 0.05, nms_thresh, max_det=100)
    assert max(len(w.scores) for w in want) > 20 and len({float(s) for s in want[0].scores}) < len(want[0].scores)
    padded = postprocess_fixed(decoded, 0.05, nms_thresh, max_det=100, pre_nms_topk=400)
    assert padded.candidates.max() <= 400 and padded.converged.all()
    assert (padded.candidates > padded.count).all()  # NMS removed something in every image
    assert_same(unpad_detections(padded, nms_thresh), want)
    assert_same(postprocess(decoded, 0.05, nms_thresh, max_det=100), want)


def test_max_det_cuts_after_nms_in_score_order():
    decoded = random_decoded(2, 300, 5, seed=7)
    want = reference_nms(decoded, 0.05, 0.65, max_det=7)
    padded = postprocess_fixed(decoded, 0.05, 0.65, max_det=7)
    assert padded.boxes.shape == (2, 7, 4) and padded.count.tolist() == [7, 7]
    assert_same(unpad_detections(padded, 0.65), want)


def test_tied_scores_come_out_in_the_same_order_on_both_batched_nms_paths():
    """Over 1,000 candidates on the CPU, batched_nms loops over classes and sorts unstably: postprocess
    re-sorts so that a large batch gives what its images give one by one, as postprocess_fixed does."""
    decoded = random_decoded(4, 400, 40, seed=3)
    assert int(((decoded[..., 4:5] * decoded[..., 5:]).amax(-1) > 0.05).sum()) > 1000
    together = postprocess(decoded, 0.05, 0.5, max_det=300)
    alone = [postprocess(d[None], 0.05, 0.5, max_det=300)[0] for d in decoded]
    assert_same(together, alone)
    assert_same(unpad_detections(postprocess_fixed(decoded, 0.05, 0.5, max_det=300), 0.5), together)


def test_a_chain_of_suppressions_needs_rounds_and_says_so():
    """A suppresses B, B would suppress C, A does not touch C: greedy keeps A and C."""
    boxes = torch.tensor([[[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]]], dtype=torch.float32)
    labels, valid = torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool)
    keep, converged = greedy_nms_fixed(boxes, labels, valid, iou_thresh=0.4, iterations=1)
    assert not converged.item()
    keep, converged = greedy_nms_fixed(boxes, labels, valid, iou_thresh=0.4, iterations=2)
    assert converged.item() and keep[0].tolist() == [True, False, True]
    # IoU(A, B) = IoU(B, C) = 0.54, IoU(A, C) = 0.25: with B of another class nothing is suppressed.
    keep, _ = greedy_nms_fixed(boxes, torch.tensor([[0, 1, 0]]), valid, iou_thresh=0.4, iterations=2)
    assert keep[0].tolist() == [True, True, True]


def test_unconverged_images_are_completed_exactly():
    decoded = random_decoded(3, 400, 3, seed=11, clusters=4)  # few classes, dense clusters: long chains
    want = reference_nms(decoded, 0.05, 0.5, max_det=100)
    padded = postprocess_fixed(decoded, 0.05, 0.5, max_det=100, iterations=0)
    assert not padded.converged.all()
    assert_same(unpad_detections(padded, 0.5), want)


def test_more_candidates_than_the_cap_warns_and_uses_the_best_k():
    decoded = random_decoded(1, 300, 4, seed=5)
    best, _ = (decoded[..., 4:5] * decoded[..., 5:]).max(-1)
    n = int((best > 0.05).sum())
    assert n > 50
    with pytest.warns(RuntimeWarning, match=f"{n} boxes above the score threshold, more than the pre-NMS cap of 50"):
        (got,) = unpad_detections(postprocess_fixed(decoded, 0.05, 0.65, pre_nms_topk=50), 0.65)
    # The reference on the 50 best candidates (ties: lower box index first) is exactly what comes out.
    top = torch.sort(torch.where(best[0] > 0.05, best[0], -1.0), descending=True, stable=True).indices[:50]
    top = top.sort().values  # back to box order, as the candidates reach batched_nms
    (want,) = reference_nms(decoded[:, top], 0.05, 0.65, max_det=100)
    assert_same([got], [want])


def test_fixed_shapes_whatever_the_data_and_no_host_sync():
    decoded = random_decoded(2, 200, 6, seed=1)
    decoded[1, :, 4] = 0.0  # the second image has no candidate
    with count_host_syncs() as syncs:
        padded = postprocess_fixed(decoded, 0.05, 0.65, max_det=30, pre_nms_topk=250)
    assert syncs.total == 0, syncs.summary()
    assert padded.boxes.shape == (2, 30, 4) and padded.scores.shape == (2, 30) and padded.labels.shape == (2, 30)
    assert padded.top_boxes.shape == (2, 200, 4) and padded.count[1] == 0 and padded.candidates[1] == 0
    assert (padded.boxes[1] == 0).all() and (padded.scores[0, padded.count[0]:] == 0).all()
    with count_host_syncs() as syncs:
        first, empty = unpad_detections(padded, 0.65)
    assert syncs.total == 1, syncs.summary()  # one device-to-host copy for the whole batch
    assert empty.boxes.shape == (0, 4) and empty.labels.dtype == torch.int64 and len(first.scores) > 0


def test_fixed_shape_nms_is_the_same_under_autocast():
    decoded = random_decoded(2, 300, 10, seed=2)
    want = reference_nms(decoded, 0.05, 0.5, max_det=100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded = postprocess_fixed(decoded, 0.05, 0.5, max_det=100)
    assert_same(unpad_detections(padded, 0.5), want)
