"""Multi-scale batches over one order of the data per epoch, resumable at any position.

The batch sampler yields lists of :class:`SampleRequest` (index, size, mixup, seed, mosaic) so that
per-epoch settings (the size schedule, mixup and mosaic on/off) reach the data-loading workers
with the indices, without shared state. Sizes come from a generator seeded by
(seed, size-group number), so every rank of a torch.distributed run draws the same
size at the same iteration without any communication.

Training draws its indices from :class:`EpochOrder`: each epoch is one permutation of the whole
dataset, the same on every process, consumed front to back by global batches of
``batch_size × processes`` samples. After any number of steps the samples used are a prefix of
that order, so a run stopped after ``K`` samples continues at position ``K`` whatever batch size or
number of processes it is resumed with.
"""
from __future__ import annotations

from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from torch.utils.data import Sampler

from ..utils.sizes import parse_size

__all__ = ["EpochOrder", "SampleRequest", "MultiScaleBatchSampler", "size_choices"]

Size = Tuple[int, int]


class SampleRequest(NamedTuple):
    """What a worker is asked for: sample ``index`` at input ``size`` (h, w), with mixup or not, with
    mosaic or not (each then drawn with its probability).

    ``seed``, when set, seeds that sample's augmentation: the batch sampler derives it from
    (run seed, epoch, position), so a sample's augmentation depends neither on which worker
    loads it nor on what the process did before (a resumed run sees the same images).
    """

    index: int
    size: Size
    mixup: bool
    seed: Optional[int] = None
    mosaic: bool = False


def size_choices(lo: int, hi: int, step: int = 32) -> List[Size]:
    """Square sizes from ``lo`` to ``hi`` in steps of ``step`` (the paper: 320..608)."""
    return [(s, s) for s in range(lo, hi + 1, step)]


class EpochOrder(Sampler[int]):
    """This process's share of an epoch's order of the whole dataset, from a position on.

    Args:
        size: samples in the dataset.
        seed: shared by all processes; epoch ``e`` is the permutation drawn from ``(seed, e)``.
        shuffle: False keeps the dataset's order.
        rank, world: this process and how many there are (torch.distributed).

    Global step ``s`` of batch ``B = batch × world`` covers order positions ``[s·B, (s+1)·B)``:
    rank ``r`` takes every ``world``-th of the positions left, starting at its own rank, as
    DistributedSampler does, so the union over ranks of each step is one block of the order.
    """

    def __init__(self, size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.shuffle, self.rank, self.world = size, seed, shuffle, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Epoch ``epoch``'s order, from position ``start`` (samples of this epoch already used by all processes)."""
        self.epoch, self.start = epoch, min(max(0, start), self.size)

    def order(self) -> np.ndarray:
        """The whole epoch's order (every process computes the same)."""
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start:][self.rank::self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.size - self.start, self.world))


class MultiScaleBatchSampler(Sampler[List[SampleRequest]]):
    """Batches of sample requests with a per-batch input size.

    Args:
        sampler: yields dataset indices: an :class:`EpochOrder` (training), or any sampler (a
            RandomSampler, a DistributedSampler per rank).
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
        mosaic: mosaic on at all; ``no_mosaic_epochs``: final epochs without it (YOLOX: the last 15, so
            that training ends on whole pictures, as evaluation sees them).
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
        mosaic: bool = False,
        no_mosaic_epochs: int = 0,
    ) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.epochs = epochs
        self.base_size = parse_size(base_size, "data.img_size")
        self.sizes = size_choices(*size_range) if size_range else [self.base_size]
        self.interval = max(1, interval)
        self.fixed_size_epochs = fixed_size_epochs
        self.use_mixup = mixup
        self.no_mixup_epochs = no_mixup_epochs
        self.use_mosaic = mosaic
        self.no_mosaic_epochs = no_mosaic_epochs
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.start_batch = 0

    @property
    def global_batch(self) -> int:
        """Samples per step over all processes."""
        return self.batch_size * getattr(self.sampler, "world", 1)

    def set_epoch(self, epoch: int, start_batch: int = 0, start_image: Optional[int] = None) -> None:
        """Call at the start of each epoch (also forwarded to a DistributedSampler).

        With an :class:`EpochOrder`, ``start_image`` (samples of the epoch already used by all
        processes) resumes exactly there, whatever the batch geometry was; ``start_batch`` skips the
        first batches of the epoch without loading them. The shuffle order of a RandomSampler with
        a generator is reseeded from (seed, epoch), so an epoch's order does not depend on the
        epochs before it.
        """
        self.epoch = epoch
        if isinstance(self.sampler, EpochOrder):
            start = start_image if start_image is not None else start_batch * self.global_batch
            self.sampler.set_epoch(epoch, start)
            self.start_batch = start // self.global_batch  # step numbers continue a straight run's
            return
        self.start_batch = start_batch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)
        elif getattr(self.sampler, "generator", None) is not None:
            self.sampler.generator.manual_seed(self.seed * 100_003 + epoch)

    def epoch_batches(self) -> int:
        """Batches (steps) in a whole epoch."""
        if isinstance(self.sampler, EpochOrder):
            n, b = self.sampler.size, self.global_batch
            return n // b if self.drop_last else -(-n // b)
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __len__(self) -> int:
        """Batches of a whole epoch (those already done when resuming included)."""
        return self.epoch_batches()

    def batches_left(self) -> int:
        """Batches this epoch yields from the position :meth:`set_epoch` set (the same on every process)."""
        if isinstance(self.sampler, EpochOrder):
            left = self.sampler.size - self.sampler.start
            return left // self.global_batch if self.drop_last or self.sampler.world > 1 else \
                -(-left // self.global_batch)
        return max(0, self.epoch_batches() - self.start_batch)

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

    @property
    def mosaic_now(self) -> bool:
        return self.use_mosaic and self.epoch < self.epochs - self.no_mosaic_epochs

    def _requests(self, batch: List[int], i: int) -> List[SampleRequest]:
        iteration = self.epoch * len(self) + i
        size = self.size_at(iteration)
        rank = getattr(self.sampler, "rank", 0)
        base = ((self.seed * 1_000_003 + iteration) * 1_009 + rank) * self.batch_size
        return [SampleRequest(k, size, self.mixup_now, base + j, self.mosaic_now) for j, k in enumerate(batch)]

    def __iter__(self) -> Iterator[List[SampleRequest]]:
        if isinstance(self.sampler, EpochOrder):
            yield from self._iter_order()
            return
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

    def _iter_order(self) -> Iterator[List[SampleRequest]]:
        """Batches from the position set by :meth:`set_epoch`, the same number on every process."""
        mine = list(self.sampler)
        for k in range(self.batches_left()):  # whole global batches under torch.distributed: no rank runs short
            yield self._requests(mine[k * self.batch_size:(k + 1) * self.batch_size], self.start_batch + k)
