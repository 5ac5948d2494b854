"""Multi-scale batches, mixup weights, corrupt images, and the loader end to end on the built-in data."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from yolo_asff import load_config
from yolo_asff.data import DatasetError, MultiScaleBatchSampler, build_dataloader, build_dataset
from yolo_asff.data.builtin import generate_builtin
from yolo_asff.data.mixup import mixup


def make_sampler(sampler, **kw):
    args = dict(batch_size=4, epochs=10, base_size=608, size_range=(320, 608), interval=3, seed=5)
    args.update(kw)
    return MultiScaleBatchSampler(sampler, **args)


def test_one_size_per_batch_changing_every_k_iterations():
    batches = make_sampler(SequentialSampler(range(200)))
    batches.set_epoch(0)
    sizes = [b[0].size for b in batches]
    assert all(len({r.size for r in b}) == 1 for b in batches)
    assert all(s[0] % 32 == 0 and 320 <= s[0] <= 608 for s in sizes)
    groups = [sizes[i:i + 3] for i in range(0, len(sizes), 3)]
    assert all(len(set(g)) == 1 for g in groups)  # constant within each group of K = 3
    assert len(set(sizes)) > 3  # and it does change


def test_fixed_size_and_no_mixup_at_the_end():
    batches = make_sampler(SequentialSampler(range(40)), fixed_size_epochs=2, mixup=True, no_mixup_epochs=3)
    batches.set_epoch(6)
    assert all(r.mixup for b in batches for r in b)
    batches.set_epoch(7)
    assert not any(r.mixup for b in batches for r in b)
    batches.set_epoch(8)
    assert {r.size for b in batches for r in b} == {(608, 608)}


def test_mosaic_only_while_on_and_not_in_the_last_epochs():
    batches = make_sampler(SequentialSampler(range(40)), mosaic=True, no_mosaic_epochs=2, mixup=True, no_mixup_epochs=4)
    batches.set_epoch(7)
    assert all(r.mosaic for b in batches for r in b) and not any(r.mixup for b in batches for r in b)
    batches.set_epoch(8)
    assert not any(r.mosaic for b in batches for r in b)
    never = make_sampler(SequentialSampler(range(40)), no_mosaic_epochs=2)
    never.set_epoch(0)
    assert not any(r.mosaic for b in never for r in b)


def test_ranks_agree_on_sizes_without_talking():
    per_rank = []
    for rank in range(2):
        ds = DistributedSampler(range(100), num_replicas=2, rank=rank, shuffle=True, seed=1)
        batches = make_sampler(ds)
        batches.set_epoch(3)
        per_rank.append([(b[0].size, [r.index for r in b]) for b in batches])
    assert [s for s, _ in per_rank[0]] == [s for s, _ in per_rank[1]]
    assert set(sum((i for _, i in per_rank[0]), [])).isdisjoint(sum((i for _, i in per_rank[1]), []))


def test_mixup_keeps_both_box_sets_with_weights():
    a = np.full((64, 64, 3), 200, np.uint8)
    b = np.zeros((64, 64, 3), np.uint8)
    image, boxes, weights, lam = mixup(a, np.array([[0, 0, 10, 10]], np.float32), np.ones(1, np.float32),
                                       b, np.array([[5, 5, 20, 20], [30, 30, 40, 40]], np.float32),
                                       np.ones(2, np.float32), np.random.default_rng(0))
    assert boxes.shape == (3, 4) and 0 < lam < 1
    np.testing.assert_allclose(weights, [lam, 1 - lam, 1 - lam], rtol=1e-6)
    assert abs(int(image[0, 0, 0]) - 200 * lam) <= 1
    lams = [mixup(a, boxes[:1], weights[:1], b, boxes[:1], weights[:1], np.random.default_rng(s))[3] for s in range(400)]
    assert 0.45 < np.mean(lams) < 0.55 and np.std(lams) > 0.15  # Beta(1.5, 1.5): symmetric, wide


@pytest.fixture(scope="module")
def builtin_root(tmp_path_factory):
    return generate_builtin(tmp_path_factory.mktemp("builtin") / "data", train=24, val=8, seed=1)


def builtin_cfg(root, *opts):
    return load_config("configs/builtin.yaml", [f"data.root={root}", "data.num_workers=0", "train.batch_size=4", *opts])


def test_loader_batches_on_the_builtin_data(builtin_root):
    # Mixup and the test size are set here: the shipped CPU config turns mixup off for its short schedule.
    cfg = builtin_cfg(builtin_root, "train.mixup=true", "train.mixup_prob=1.0",
                      "train.no_mixup_epochs=0", "test.img_size=320")
    loader = build_dataloader(cfg, "train", distributed=False)
    loader.batch_sampler.set_epoch(0)
    batch = next(iter(loader))
    images, targets = batch["images"], batch["targets"]
    assert images.dtype == torch.float32 and images.shape[:2] == (4, 3) and images.shape[2] % 32 == 0
    assert -3 < images.mean() < 3  # normalised, not 0..255
    assert targets.shape[1] == 7 and set(targets[:, 0].long().tolist()) <= {0, 1, 2, 3}
    assert ((targets[:, 1] >= 0) & (targets[:, 1] < 6)).all()
    assert (targets[:, 6] < 1).any()  # mixup weights present
    h, w = images.shape[-2:]
    assert (targets[:, 4] <= w).all() and (targets[:, 5] <= h).all()
    val = next(iter(build_dataloader(cfg, "val", distributed=False)))
    assert val["images"].shape[-2:] == (320, 320) and val["infos"][0] is not None


def test_the_loader_takes_mosaic_from_the_config(builtin_root):
    cfg = builtin_cfg(builtin_root, "data.aug.mosaic_prob=0.5", "train.epochs=4", "train.no_mosaic_epochs=1")
    loader = build_dataloader(cfg, "train", distributed=False)
    assert loader.dataset.mosaic_prob == 0.5
    loader.batch_sampler.set_epoch(2)
    assert all(r.mosaic for r in next(iter(loader.batch_sampler)))
    loader.batch_sampler.set_epoch(3)
    assert not any(r.mosaic for r in next(iter(loader.batch_sampler)))


def test_corrupt_image_is_skipped_counted_and_reported_once(builtin_root, tmp_path, caplog):
    cfg = builtin_cfg(builtin_root)
    dataset = build_dataset(cfg, "train")
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 definitely not a jpeg")
    dataset.records[0].path = str(bad)
    from yolo_asff.data import SampleRequest
    with caplog.at_level(logging.WARNING, logger="yolo_asff"):
        for _ in range(3):
            sample = dataset[SampleRequest(0, (320, 320), False)]
            assert sample["image"].shape == (320, 320, 3)
    assert caplog.text.count("skipping unreadable image") == 1 and "corrupt.jpg" in caplog.text
    assert dataset.unreadable == {0}


def test_class_count_mismatch_is_explained(builtin_root):
    with pytest.raises(DatasetError, match="set model.num_classes=6"):
        build_dataset(builtin_cfg(builtin_root, "model.num_classes=80"), "train")


def _sizes_in_process(rank, queue):
    ds = DistributedSampler(range(100), num_replicas=2, rank=rank, shuffle=True, seed=1)
    batches = make_sampler(ds)
    batches.set_epoch(2)
    queue.put((rank, [b[0].size for b in batches]))


@pytest.mark.slow
def test_two_real_processes_draw_the_same_sizes():
    ctx = torch.multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_sizes_in_process, args=(rank, queue)) for rank in range(2)]
    for p in procs:
        p.start()
    results = dict(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results[0] == results[1] and len(set(results[0])) > 1


def test_the_order_of_an_epoch_survives_a_change_of_process_count():
    from yolo_asff.data.sampler import EpochOrder, MultiScaleBatchSampler

    def steps(world, batch, start):
        """The images of each global step: the union over the processes' batches."""
        per_rank = []
        for rank in range(world):
            sampler = MultiScaleBatchSampler(EpochOrder(30, seed=7, rank=rank, world=world), batch, 5, 64, None, seed=7)
            sampler.set_epoch(2, start_image=start)
            per_rank.append([[r.index for r in b] for b in sampler])
        assert len({len(b) for b in per_rank}) == 1  # every process takes the same number of steps
        return [sorted(i for part in step for i in part) for step in zip(*per_rank)]

    order = EpochOrder(30, seed=7)
    order.set_epoch(2)
    full = order.order().tolist()
    assert [i for step in steps(1, 6, 0) for i in step] == sorted(full[:6]) + sorted(full[6:12]) + \
        sorted(full[12:18]) + sorted(full[18:24]) + sorted(full[24:30])
    # stopped after 12 images on one process, resumed on two with batches of 2: 4 images a step, in order
    assert steps(2, 2, 12) == [sorted(full[k:k + 4]) for k in (12, 16, 20, 24)]
