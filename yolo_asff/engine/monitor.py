"""What a training run shows: log lines, a tqdm bar per epoch, TensorBoard events, metrics.json."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from ..utils.logging import get_logger

__all__ = ["LossSums", "RunMonitor", "Throughput", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}"


class _NoWriter:
    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class RunMonitor:
    """Logging, progress and TensorBoard for the main process; silent on other ranks.

    Args:
        out_dir: the run folder (TensorBoard events go to ``out_dir/tensorboard``).
        enabled: False on ranks other than 0.
        progress: show tqdm bars; None = only when stderr is a terminal.
    """

    def __init__(self, out_dir: Path, enabled: bool = True, progress: Optional[bool] = None) -> None:
        self.enabled = enabled
        self.log = get_logger("train")
        self.progress = enabled and (sys.stderr.isatty() if progress is None else progress)
        self.writer: Any = _NoWriter()
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                self.log.warning("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
        self._bar: Any = None

    # -- progress bar -------------------------------------------------------------------------
    def start_epoch(self, epoch: int, epochs: int, total: int, initial: int = 0) -> None:
        if self.progress:
            from tqdm import tqdm

            from tqdm.contrib.logging import logging_redirect_tqdm

            self._bar = tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", dynamic_ncols=True,
                             leave=True, file=sys.stderr)
            # Log lines go through tqdm.write while the bar is up, so they do not tear it.
            self._redirect = logging_redirect_tqdm(loggers=[get_logger()])
            self._redirect.__enter__()

    def step(self, postfix: Optional[Mapping[str, Any]] = None) -> None:
        if self._bar is not None:
            self._bar.update(1)
            if postfix:
                self._bar.set_postfix(postfix, refresh=False)

    def end_epoch(self) -> None:
        if self._bar is not None:
            self._redirect.__exit__(None, None, None)
            self._bar.close()
            self._bar = None

    # -- logs and events ----------------------------------------------------------------------
    def info(self, message: str, *args: Any) -> None:
        if self.enabled:
            self.log.info(message, *args)

    def warning(self, message: str, *args: Any) -> None:
        if self.enabled:
            self.log.warning(message, *args)

    def exception(self, message: str, *args: Any) -> None:
        """An error: one line on the terminal, with the current exception's traceback in the log file."""
        if self.enabled:
            self.log.error(message, *args, exc_info=True)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        if self.enabled:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def image(self, name: str, image_bgr: np.ndarray, step: int) -> None:
        if self.enabled:
            self.writer.add_image(name, image_bgr[..., ::-1].copy(), step, dataformats="HWC")

    def close(self) -> None:
        self.end_epoch()
        if self.enabled:
            self.writer.flush()
            self.writer.close()


class Throughput:
    """Images per second over a window, on the wall clock."""

    def __init__(self) -> None:
        self.images = 0
        self.start = time.perf_counter()

    def add(self, n: int) -> None:
        self.images += n

    def rate(self) -> float:
        return self.images / max(time.perf_counter() - self.start, 1e-9)


class LossSums:
    """Sums of the loss terms over steps, kept where the terms are (the device) until they are read.

    :meth:`add` is tensor arithmetic only, no host synchronisation; :meth:`means` reads every sum in one
    device-to-host copy. Terms are the detached scalar tensors of the loss's dict (``YoloLoss.forward``).
    """

    def __init__(self) -> None:
        self.sums: Dict[str, Any] = {}
        self.count = 0

    def add(self, terms: Mapping[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def means(self) -> Dict[str, float]:
        """Each term's mean over the steps added (host floats); empty before the first :meth:`add`."""
        if not self.count or not self.sums:
            return {}
        values = torch.stack([torch.as_tensor(v) for v in self.sums.values()]).tolist()
        return {name: value / self.count for name, value in zip(self.sums, values)}
