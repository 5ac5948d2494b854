"""Predictor: pixels in the way training sees them, boxes back in the original picture's pixels."""
from __future__ import annotations

import copy
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import make_model
from yolo_asff.assets import sample_image_path
from yolo_asff.config import Config
from yolo_asff.engine.predictor import Predictor, read_image

NUM_CLASSES = 3


pytestmark = pytest.mark.usefixtures("one_thread")


class FixedBoxModel(nn.Module):
    """Eval contract stand-in: one box at fixed input-pixel coordinates, score 0.9, class 1."""

    def __init__(self, box_in_input):
        super().__init__()
        self.box = torch.tensor(box_in_input, dtype=torch.float32)
        self.anchor = nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, x, return_fusion=False):
        self.seen.append(x.detach().clone())
        row = torch.cat([self.box, torch.tensor([0.9, 0.0, 1.0, 0.0])]).to(x.device)
        out = row.expand(x.shape[0], 1, 5 + NUM_CLASSES).clone()
        return (out, []) if return_fusion else out


class RedSpotModel(nn.Module):
    """A 'detector' of pure red: one box around the input pixels whose normalised R channel is high.

    Depends only on each picture's own pixels, so batched and single runs agree exactly,
    and it sees the picture only if BGR→RGB, /255 and mean/std were done as in training.
    """

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x, return_fusion=False):
        rows = []
        for img in x.float():
            # Normalised red of 255 is (1 - 0.485) / 0.229 = 2.25 and of grey 100 is -0.41;
            # G and B of the red patch are strongly negative.
            mask = (img[0] > 0.9) & (img[1] < -1.0) & (img[2] < -1.0)
            ys, xs = mask.nonzero(as_tuple=True)
            if len(xs):
                box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
                rows.append(torch.cat([box, torch.tensor([0.95, 0.0, 0.0, 1.0], device=x.device)]))
            else:
                rows.append(torch.zeros(5 + NUM_CLASSES, device=x.device))
        out = torch.stack(rows)[:, None]
        h, w = x.shape[-2:]
        maps = [torch.full((x.shape[0], 3, h // s, w // s), 1 / 3, device=x.device) for s in (8, 16, 32)]
        return (out, maps) if return_fusion else out


def red_patch_image(h, w, box):
    """Grey BGR picture with a pure-red rectangle covering pixel edges ``box`` = x1, y1, x2, y2."""
    img = np.full((h, w, 3), 100, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = (0, 0, 255)
    return img


def expected_input_box(box, h0, w0, size, keep_ratio):
    """The box in network-input pixels, worked out independently of the library's fit_into."""
    h, w = size
    if keep_ratio:
        s = min(h / h0, w / w0)
        sx = sy = s
        px, py = (w - round(w0 * s)) // 2, (h - round(h0 * s)) // 2
    else:
        sx, sy, px, py = w / w0, h / h0, 0, 0
    x1, y1, x2, y2 = box
    return [x1 * sx + px, y1 * sy + py, x2 * sx + px, y2 * sy + py]


@pytest.mark.parametrize("keep_ratio", [True, False])
@pytest.mark.parametrize("h0, w0, size", [(100, 200, (128, 128)), (300, 120, (96, 160)), (90, 250, (160, 96))])
def test_fixed_input_box_maps_back_to_the_original_box(keep_ratio, h0, w0, size):
    original = [0.2 * w0, 0.25 * h0, 0.7 * w0, 0.9 * h0]
    model = FixedBoxModel(expected_input_box(original, h0, w0, size, keep_ratio))
    predictor = Predictor(model, img_size=size, conf_thresh=0.3, letterbox=keep_ratio)
    (det,) = predictor(np.zeros((h0, w0, 3), np.uint8))
    assert model.seen[0].shape == (1, 3, *size)
    assert det.boxes.shape == (1, 4) and det.labels.tolist() == [1] and det.scores.item() == pytest.approx(0.9)
    assert torch.allclose(det.boxes[0], torch.tensor(original), atol=1.0), (det.boxes, original)


def test_known_numbers_letterbox_and_clipping():
    # 200×100 into 128×128: scale 0.64, 128×64 centred, 32 px of padding above and below.
    model = FixedBoxModel([32.0, 44.8, 96.0, 83.2])
    (det,) = Predictor(model, img_size=128)(np.zeros((100, 200, 3), np.uint8))
    assert torch.allclose(det.boxes[0], torch.tensor([50.0, 20.0, 150.0, 80.0]), atol=0.01)
    # A box reaching into the padding and past the right edge is clipped to the picture.
    model = FixedBoxModel([-10.0, 0.0, 140.0, 128.0])
    (det,) = Predictor(model, img_size=128)(np.zeros((100, 200, 3), np.uint8))
    assert det.boxes[0].tolist() == [0.0, 0.0, 200.0, 100.0]


def test_normalisation_matches_training_and_padding_is_zero():
    model = FixedBoxModel([0.0, 0.0, 1.0, 1.0])
    image = np.zeros((64, 128, 3), np.uint8)
    image[:] = (10, 100, 200)  # BGR
    Predictor(model, img_size=64)(image)
    x = model.seen[0][0]  # (3, 64, 64): the picture is 64×32 at rows 16..47
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    rgb = (torch.tensor([200.0, 100.0, 10.0]) / 255 - mean) / std
    assert torch.allclose(x[:, 32, 32], rgb, atol=1e-5)
    assert x[:, :16].abs().max() < 0.02 and x[:, 48:].abs().max() < 0.02  # mean-filled padding


def test_path_array_list_and_tensor_inputs_agree(tmp_path):
    box = (40, 20, 120, 70)
    a = red_patch_image(90, 200, box)
    b = red_patch_image(150, 100, (10, 30, 60, 140))
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), a)
    predictor = Predictor(RedSpotModel(), img_size=(96, 128), conf_thresh=0.5, batch_size=2)
    from_path = predictor(str(path))
    from_array = predictor(a)
    from_list = predictor([path, b, a])
    batch, infos = predictor.preprocess([a, b])
    from_tensor = predictor(batch, infos=infos)
    for got in (from_path[0], from_array[0], from_list[0], from_list[2], from_tensor[0]):
        assert torch.equal(got.boxes, from_array[0].boxes) and got.labels.tolist() == [2]
    assert torch.equal(from_list[1].boxes, from_tensor[1].boxes)
    # Letterbox resampling blurs the patch edges by a fraction of an input pixel (~2 original px).
    assert torch.allclose(from_array[0].boxes[0], torch.tensor(box, dtype=torch.float32), atol=2.0)
    assert torch.allclose(from_list[1].boxes[0], torch.tensor([10.0, 30, 60, 140]), atol=2.0)
    # A tensor without letterbox infos: boxes stay in its own pixels, clipped to it.
    (raw,) = predictor(batch[:1])
    assert raw.boxes[0, 2] <= 128 and raw.boxes[0, 3] <= 96
    assert not torch.allclose(raw.boxes, from_array[0].boxes)


def test_real_model_batched_run_and_fusion_maps():
    model = make_model("yolov3_asff", num_classes=NUM_CLASSES, width=0.125)
    predictor = Predictor(model, img_size=(64, 96), conf_thresh=0.0, max_det=20)
    photo = read_image(sample_image_path())
    wide = np.ascontiguousarray(photo[100:300])
    dets, maps = predictor([photo, wide], return_fusion=True)
    assert [len(d.boxes) for d in dets] == [20, 20]
    for det, (h, w) in zip(dets, [photo.shape[:2], wide.shape[:2]]):
        assert det.boxes.dtype == torch.float32 and det.boxes.device.type == "cpu"
        assert (det.boxes[:, [0, 2]] >= 0).all() and (det.boxes[:, [0, 2]] <= w).all()
        assert (det.boxes[:, [1, 3]] >= 0).all() and (det.boxes[:, [1, 3]] <= h).all()
        assert (det.scores[:-1] >= det.scores[1:]).all() and (det.labels < NUM_CLASSES).all()
    assert [tuple(m.shape) for m in maps] == [(2, 3, 8, 12), (2, 3, 4, 6), (2, 3, 2, 3)]
    assert all(torch.allclose(m.sum(1), torch.ones(())) for m in maps)
    baseline = Predictor(make_model("baseline", num_classes=NUM_CLASSES, width=0.125), img_size=64)
    assert baseline(photo, return_fusion=True)[1] == []


def test_from_config_takes_test_and_data_settings_and_overrides():
    cfg = Config()
    cfg.test.img_size, cfg.test.conf_thresh, cfg.data.letterbox = [64, 96], 0.05, False
    cfg.runtime.device = "cpu"
    predictor = Predictor.from_config(cfg, FixedBoxModel([0, 0, 1, 1]), conf_thresh=0.4, max_det=7)
    assert predictor.input_size == (64, 96) and not predictor.keep_ratio
    assert (predictor.conf_thresh, predictor.max_det, predictor.nms_thresh) == (0.4, 7, cfg.test.nms_thresh)
    assert predictor.device.type == "cpu"


def test_bad_inputs_name_the_file_or_say_what_is_wrong(tmp_path):
    predictor = Predictor(FixedBoxModel([0, 0, 1, 1]), img_size=64)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        predictor(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match="corrupt.jpg"):
        predictor([np.zeros((8, 8, 3), np.uint8), str(corrupt)])
    with pytest.raises(ValueError, match="uint8"):
        predictor(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        predictor(torch.zeros(2, 4, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        Predictor(FixedBoxModel([0, 0, 1, 1]), img_size=100)
    # Grey and BGRA pictures are accepted and converted.
    assert len(predictor([np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8)])) == 2


def test_half_on_cpu_falls_back_to_fp32_with_a_warning():
    model = make_model("yolov3_tiny", num_classes=NUM_CLASSES, width=0.125)
    with pytest.warns(RuntimeWarning, match="half precision needs a CUDA device"):
        predictor = Predictor(model, img_size=64, half=True, device="cpu")
    assert not predictor.half and next(model.parameters()).dtype == torch.float32
    assert len(predictor(np.zeros((40, 50, 3), np.uint8))) == 1


def test_half_never_converts_the_callers_model(monkeypatch):
    """half is autocast around the forward pass, wherever it runs: the model's own weights are never made fp16."""
    model = make_model("yolov3_tiny", num_classes=NUM_CLASSES, width=0.125)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(model, "half", lambda: pytest.fail("the predictor called .half() on the caller's model"))
    with pytest.warns(RuntimeWarning):
        predictor = Predictor(model, img_size=64, half=True, device="cpu")
    predictor.half = True  # as on a GPU: autocast asked for (a no-op on the CPU)
    assert len(predictor(np.zeros((40, 50, 3), np.uint8))) == 1
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_default_thresholds_are_the_configs():
    cfg = Config()
    predictor = Predictor(FixedBoxModel([0, 0, 1, 1]), img_size=64)
    assert (predictor.conf_thresh, predictor.nms_thresh, predictor.max_det) == (
        cfg.test.show_thresh, cfg.test.nms_thresh, cfg.test.max_det)
    cfg.test.show_thresh, cfg.runtime.device = 0.6, "cpu"
    assert Predictor.from_config(cfg, FixedBoxModel([0, 0, 1, 1])).conf_thresh == 0.6  # not test.conf_thresh


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fp32_and_half_agree_with_cpu():
    image = red_patch_image(90, 200, (40, 20, 120, 70))
    cpu = Predictor(RedSpotModel(), img_size=128)(image)[0]
    for half in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gpu = Predictor(RedSpotModel(), img_size=128, device="cuda", half=half)(image)[0]
        assert torch.allclose(gpu.boxes, cpu.boxes) and gpu.boxes.device.type == "cpu"
    photo = read_image(sample_image_path())
    model = make_model(num_classes=NUM_CLASSES, width=0.25)
    fp32 = Predictor(copy.deepcopy(model), img_size=128, conf_thresh=0.0, device="cuda")
    fp16 = Predictor(model, img_size=128, conf_thresh=0.0, device="cuda", half=True)
    # half is float16 autocast: the caller's model keeps its float32 weights, the input stays float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    x32, _ = fp32.preprocess([photo])
    x16, _ = fp16.preprocess([photo])
    assert x16.dtype == torch.float32 and torch.equal(x16, x32)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        got = fp16.model(x16).float()
    with torch.inference_mode():
        ref = fp32.model(x32)
    # Compared before NMS: fp16 rounding may reorder the near-equal scores of a random model.
    assert (got[..., :4] - ref[..., :4]).abs().median() < 1.0 and (got[..., 4:] - ref[..., 4:]).abs().max() < 0.05
    dets, maps = fp16([photo, photo], return_fusion=True)
    assert dets[0].boxes.dtype == torch.float32 and maps[0].dtype == torch.float32 and len(dets[0].boxes) > 0
    assert (dets[0].boxes >= 0).all() and (dets[0].boxes <= 512).all()
    assert torch.equal(dets[0].boxes, dets[1].boxes)
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # still, after running


def scoring_model(pictures, size):
    """A tiny-width ASFF model whose scores spread over (0, 1) and depend on the picture: batch-norm
    statistics taken from these pictures, and output convolutions without the 0.01 prior (which keeps
    every score of an untrained model near 1e-4)."""
    model = make_model("yolov3_asff", num_classes=NUM_CLASSES, width=0.125)
    x, _ = Predictor(model, img_size=size).preprocess(pictures)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a cumulative average: one batch sets the running statistics
    with torch.no_grad():
        model.train()(x)
    for conv in model.head.convs:
        nn.init.zeros_(conv.bias)
        nn.init.normal_(conv.weight, std=0.3)
    return model.eval(), x


def test_graphed_predictor_gives_the_eager_detections():
    """forward + decode + fixed-shape NMS compiled as one function (CPU: torch.compile) finds what the eager
    predictor finds, picture by picture, including a picture with no detection."""
    photo = read_image(sample_image_path())
    rng = np.random.default_rng(0)
    pictures = [photo, np.ascontiguousarray(photo[100:300]), rng.integers(0, 255, (90, 160, 3), dtype=np.uint8),
                np.full((80, 60, 3), 127, np.uint8)]
    size = (64, 64)
    model, x = scoring_model(pictures, size)
    with torch.inference_mode():
        decoded = model(x)
    scores = (decoded[..., 4:5] * decoded[..., 5:]).amax(-1)  # (pictures, boxes)
    conf = scores.amax(-1).min().item() + 1e-4  # just above the least confident picture's top: no detection
    eager = Predictor(model, img_size=size, conf_thresh=conf, nms_thresh=0.3, batch_size=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback
        graphed = Predictor(model, img_size=size, conf_thresh=conf, nms_thresh=0.3, graphed=True)
        got = graphed(pictures)
    want = eager(pictures)
    assert graphed.graphed.compiled and graphed.graphed.compile_time_s > 0
    counts = [len(d.scores) for d in want]
    assert sorted(counts)[0] == 0 and sorted(counts)[1] >= 3, counts
    assert sum(counts) < int((scores > conf).sum())  # NMS did suppress boxes
    # The compiled network rounds differently (fused kernels): scores agree to ~1e-5 and boxes to ~1e-3
    # input pixels, ~0.01 pixels of the 10x larger photo.
    for g, w in zip(got, want):
        assert g.labels.tolist() == w.labels.tolist()
        torch.testing.assert_close(g.scores, w.scores, atol=1e-4, rtol=0)
        torch.testing.assert_close(g.boxes, w.boxes, atol=0.05, rtol=0)  # original-picture pixels
    # A tensor batch runs picture by picture through the same graph, with the same detections.
    batch, infos = eager.preprocess(pictures)
    for g, w in zip(graphed(batch, infos=infos), want):
        assert g.labels.tolist() == w.labels.tolist()
        torch.testing.assert_close(g.boxes, w.boxes, atol=0.05, rtol=0)
    # return_fusion runs eagerly and still answers.
    dets, maps = graphed(pictures[:1], return_fusion=True)
    assert dets[0].labels.tolist() == want[0].labels.tolist() and len(maps) == 3
