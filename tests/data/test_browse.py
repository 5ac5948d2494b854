"""The dataset browser in the package (yolo_asff/data/browse.py), called in-process."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_asff import load_config
from yolo_asff.data.browse import browse_dataset, sample_tiles
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.errors import InvalidInputError


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return generate_builtin(tmp_path_factory.mktemp("browse") / "data", train=5, val=1, seed=0)


def test_tiles_are_augmented_at_the_size_and_the_same_for_a_seed(root):
    cfg = load_config("builtin", [f"data.root={root}"])
    tiles = sample_tiles(cfg, num=8, size=(64, 96), seed=3)
    assert len(tiles) == 5 and all(t.shape == (64, 96, 3) and t.dtype == np.uint8 for t in tiles)  # at most the data
    again = sample_tiles(cfg, num=8, size=(64, 96), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(tiles, again))
    other = sample_tiles(cfg, num=8, size=(64, 96), seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(tiles, other))


def test_the_grid_is_written_at_the_size_asked(root, tmp_path, capsys):
    path = browse_dataset("builtin", [f"data.root={root}"], num=4, size=[64, 96], out=tmp_path / "b", mosaic=False)
    assert cv2.imread(str(path)).shape == (64, 4 * 96, 3)
    assert "wrote 4 augmented samples at 64x96" in capsys.readouterr().out
    with pytest.raises(InvalidInputError, match="--size must be positive multiples of 32"):
        browse_dataset("builtin", [f"data.root={root}"], size=70, out=tmp_path / "b")
