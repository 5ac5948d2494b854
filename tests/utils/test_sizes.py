"""The one input-size parser (yolo_asff/utils/sizes.py): config keys, --size flags and function arguments."""
from __future__ import annotations

import numpy as np
import pytest

from yolo_asff.errors import InvalidInputError
from yolo_asff.utils.sizes import parse_size, size_problem


@pytest.mark.parametrize("value, hw", [(608, (608, 608)), ([384, 640], (384, 640)), ((64, 32), (64, 32)),
                                       (np.array([96, 64]), (96, 64)), (np.int64(32), (32, 32))])
def test_sizes_are_one_int_or_height_width(value, hw):
    assert parse_size(value) == hw and size_problem(value) is None


@pytest.mark.parametrize("value", [600, 0, -32, [608], [64, 64, 64], [64.0, 64], 64.0, True, "608", None])
def test_anything_else_is_refused_naming_the_setting(value):
    with pytest.raises(InvalidInputError, match=r"^--size must be positive multiples of 32"):
        parse_size(value, "--size")
    assert size_problem(value) is not None
