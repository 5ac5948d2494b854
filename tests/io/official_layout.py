"""Synthetic official ASFF state_dicts, built from the key/shape listing of the released checkpoints.

``official_asff_state_dicts.txt`` (a copy of ``../shared/official_asff_state_dicts.txt``) lists
every key and shape of the three official models for 80 classes; these helpers turn it into
random state_dicts laid out exactly like the released files, for any class count.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

LISTING = Path(__file__).with_name("official_asff_state_dicts.txt")
_SECTION = re.compile(r"^## (\w+) .*?: (\d+) keys, (\d+) parameters$")


@lru_cache(maxsize=None)
def official_layout(variant: str) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    """``(key, shape)`` pairs of an official variant (``baseline``, ``asff``, ``asff_rfb``), file order."""
    rows: Dict[str, List[Tuple[str, Tuple[int, ...]]]] = {}
    current: Optional[str] = None
    for line in LISTING.read_text().splitlines():
        header = _SECTION.match(line)
        if header:
            current = header.group(1)
            rows[current] = []
        elif current and line.strip() and not line.startswith("#"):
            key, shape = line.split(" ", 1)
            rows[current].append((key, tuple(int(x) for x in re.findall(r"\d+", shape))))
    return tuple(rows[variant])


def official_state_dict(variant: str, num_classes: int = 80, dtype: torch.dtype = torch.float16,
                        seed: int = 0) -> Dict[str, torch.Tensor]:
    """A random state_dict with the official keys and shapes (output convs resized to ``num_classes``)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in official_layout(variant):
        is_output = re.match(r"level_\d_header\.conv\.", key) or (
            variant == "baseline" and re.match(r"module_list\.(19|28|37)\.conv\.", key))
        if is_output:
            shape = (4 * (5 + num_classes), *shape[1:])
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(1000, dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = (torch.rand(shape, generator=gen) + 0.5).to(dtype)
        else:
            out[key] = (torch.randn(shape, generator=gen) * 0.02).to(dtype)
    return out
