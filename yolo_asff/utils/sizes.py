"""Network input sizes: the one parser for every place a size is given (config keys, ``--size`` flags,
function arguments).

A size is one int (a square) or ``(height, width)``, both positive multiples of :data:`STRIDE`: the
coarsest output level has stride 32, so an input tiles into whole cells there (the detector checks
the same on its input tensors, ``yolo_asff/models/detector.py``).
"""
from __future__ import annotations

import operator
from typing import Any, Optional, Sequence, Tuple, Union

from ..errors import InvalidInputError

__all__ = ["STRIDE", "Size", "parse_size", "size_problem"]

STRIDE = 32
Size = Union[int, Sequence[int]]


def _side(value: Any) -> Optional[int]:
    """``value`` as an int when it is an integer (numpy and torch ones included, not bool or float)."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def size_problem(value: Any) -> Optional[str]:
    """What is wrong with ``value`` as an input size, as the end of a sentence naming it; None when it is one.

    Accepted: an int, or a sequence of exactly two ints (``[h, w]``), each a positive multiple of 32.
    """
    problem = (f"must be positive multiples of {STRIDE}: one int (square) or [height, width], e.g. 608 or "
               f"[384, 640]; got {value!r}")
    if isinstance(value, (str, bytes)):
        return problem
    if _side(value) is not None:
        sides = [_side(value)]
    elif isinstance(value, Sequence) or hasattr(value, "__len__"):
        sides = [_side(v) for v in value]
        if len(sides) != 2:
            return problem
    else:
        return problem
    return None if all(s is not None and s > 0 and s % STRIDE == 0 for s in sides) else problem


def parse_size(value: Size, name: str = "img_size") -> Tuple[int, int]:
    """``(height, width)`` of an input size given as an int (square) or ``[h, w]``.

    Raises:
        InvalidInputError: (a ValueError) ``value`` is not a size (see :func:`size_problem`); the message
            starts with ``name`` (a config key or a flag).
    """
    problem = size_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{name} {problem}")
    side = _side(value)
    if side is not None:
        return side, side
    h, w = (_side(v) for v in value)
    return h, w
