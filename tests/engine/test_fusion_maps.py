"""The ASFF weight maps drawn over the picture: lined up with its pixels, one panel per weight."""
from __future__ import annotations

import numpy as np
import torch

from yolo_asff.engine.fusion_maps import fusion_figure, unletterbox_map


def test_fusion_maps_line_up_with_the_picture():
    # 200×100 picture letterboxed into 128×128 (scale 0.64, content rows 32..95). A stride-8 map that
    # is 1 from input row 80 down covers the picture from row (80 - 32) / 0.64 = 75; bilinear
    # upsampling blurs the step between the cell centres, input rows 76..84 = picture rows 69..81.
    level = np.zeros((16, 16), np.float32)
    level[10:] = 1.0
    lifted = unletterbox_map(level, (100, 200), (128, 128))
    assert lifted.shape == (100, 200)
    assert lifted[:68].max() < 0.01 and lifted[82:].min() > 0.99
    assert 0.3 < lifted[75].mean() < 0.7
    # Column k shows channel k (alpha, beta, gamma): only the middle column is hot here.
    maps = [torch.zeros(3, 128 // s, 128 // s) for s in (8, 16, 32)]
    for m in maps:
        m[1] = 1.0
    figure = fusion_figure(np.full((100, 200, 3), 128, np.uint8), maps, (128, 128), cell_width=100)
    panel = 38 + 50 + 2
    assert figure.shape == (3 * panel + 30, 3 * 102, 3)
    centre = figure[panel + 38 + 25, [51, 153, 255]]  # middle of each panel in the second row
    assert centre[1, 2] > 100 > centre[0, 2] and centre[2, 2] < 100  # red only where the weight is 1
