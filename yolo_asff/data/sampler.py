"""Multi-scale batches: one input size per batch, changed every K iterations, the same on every process.

The batch sampler yields lists of :class:`SampleRequest` (index, size, mixup) so that
per-epoch settings (the size schedule, mixup on/off) reach the data-loading workers
with the indices, without shared state. Sizes come from a generator seeded by
(seed, size-group number), so every rank of a torch.distributed run draws the same
size at the same iteration without any communication.
"""
from __future__ import annotations

from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import Sampler

__all__ = ["SampleRequest", "MultiScaleBatchSampler", "size_choices"]

Size = Tuple[int, int]


class SampleRequest(NamedTuple):
    """What a worker is asked for: sample ``index`` at input ``size`` (h, w), with mixup or not.

    ``seed``, when set, seeds that sample's augmentation: the batch sampler derives it from
    (run seed, epoch, position), so a sample's augmentation depends neither on which worker
    loads it nor on what the process did before (a resumed run sees the same images).
    """

    index: int
    size: Size
    mixup: bool
    seed: Optional[int] = None


def _hw(size: Union[int, Sequence[int]]) -> Size:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def size_choices(lo: int, hi: int, step: int = 32) -> List[Size]:
    """Square sizes from ``lo`` to ``hi`` in steps of ``step`` (the paper: 320..608)."""
    return [(s, s) for s in range(lo, hi + 1, step)]


class MultiScaleBatchSampler(Sampler[List[SampleRequest]]):
    """Batches of sample requests with a per-batch input size.

    Args:
        sampler: yields dataset indices (a RandomSampler, or a DistributedSampler per rank).
        batch_size: samples per batch.
        epochs: total epochs of the run (for the end-of-run schedules).
        base_size: the fixed size (int or (h, w)): used when multi-scale is off and in the last
            ``fixed_size_epochs`` epochs.
        size_range: (min, max) multi-scale sizes, step 32; None turns multi-scale off.
        interval: iterations between size changes.
        fixed_size_epochs: final epochs at ``base_size``.
        mixup: mixup on at all; ``no_mixup_epochs``: final epochs without it.
        seed: shared by all ranks.
        drop_last: drop the last incomplete batch.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        epochs: int,
        base_size: Union[int, Sequence[int]],
        size_range: Optional[Sequence[int]] = (320, 608),
        interval: int = 10,
        fixed_size_epochs: int = 0,
        mixup: bool = False,
        no_mixup_epochs: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.epochs = epochs
        self.base_size = _hw(base_size)
        self.sizes = size_choices(*size_range) if size_range else [self.base_size]
        self.interval = max(1, interval)
        self.fixed_size_epochs = fixed_size_epochs
        self.use_mixup = mixup
        self.no_mixup_epochs = no_mixup_epochs
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Call at the start of each epoch (also forwarded to a DistributedSampler).

        The shuffle order of a RandomSampler with a generator is reseeded from (seed, epoch)
        too, so an epoch's order does not depend on the epochs before it. ``start_batch``
        skips the first batches of the epoch without loading them (resuming mid-epoch).
        """
        self.epoch = epoch
        self.start_batch = start_batch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        elif getattr(self.sampler, "generator", None) is not None:
            self.sampler.generator.manual_seed(self.seed * 100_003 + epoch)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def size_at(self, iteration: int) -> Size:
        """The input size of global iteration ``iteration`` (counted from the start of the run)."""
        if len(self.sizes) == 1 or self.epoch >= self.epochs - self.fixed_size_epochs:
            return self.base_size
        group = iteration // self.interval
        rng = np.random.default_rng([self.seed, group])
        return self.sizes[int(rng.integers(len(self.sizes)))]

    @property
    def mixup_now(self) -> bool:
        return self.use_mixup and self.epoch < self.epochs - self.no_mixup_epochs

    def _requests(self, batch: List[int], i: int) -> List[SampleRequest]:
        iteration = self.epoch * len(self) + i
        size = self.size_at(iteration)
        rank = getattr(self.sampler, "rank", 0)
        base = ((self.seed * 1_000_003 + iteration) * 1_009 + rank) * self.batch_size
        return [SampleRequest(k, size, self.mixup_now, base + j) for j, k in enumerate(batch)]

    def __iter__(self) -> Iterator[List[SampleRequest]]:
        batch: List[int] = []
        i = 0
        for index in self.sampler:
            batch.append(int(index))
            if len(batch) == self.batch_size:
                if i >= self.start_batch:
                    yield self._requests(batch, i)
                batch, i = [], i + 1
        if batch and not self.drop_last and i >= self.start_batch:
            yield self._requests(batch, i)
