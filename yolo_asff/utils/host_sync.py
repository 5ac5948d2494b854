"""Count the places where code makes the host wait for the device: host syncs.

    with count_host_syncs() as syncs:
        train_step()
    assert syncs.total <= 1, syncs.summary()

On a GPU a host sync stalls the CPU until the queued kernels have run, so the CPU can no
longer run ahead and queue the next step. Where they happen can be found on the CPU, with
no GPU: every sync is a request for a tensor's *values* on the host, or an operation whose
output shape depends on tensor values (the host must know the shape to allocate it). This
instrument counts both kinds while the ``with`` block runs:

- ``read``: a tensor's values become Python or NumPy values: ``item()``, ``bool()``,
  ``int()``, ``float()`` (seen as ``aten._local_scalar_dense``), ``torch.equal``,
  ``tolist()``, ``numpy()`` (and so ``np.asarray(t)``), ``cpu()``. Reading a tensor that was
  copied to the host with ``cpu()`` inside the block again (``t.cpu().numpy()``, and reads of
  results computed from host copies only) counts once, as it syncs once. So that a CPU run
  tells the copy from the original, ``cpu()`` of a CPU tensor returns an alias (a view) inside
  the block, not the tensor itself.
- ``shape``: an output whose size depends on values: ``nonzero`` (also
  ``torch.where(mask)``), ``masked_select``, indexing or assigning with a boolean mask
  (``x[mask]``, ``x[mask] = v``), ``unique``, ``unique_consecutive``, ``bincount``,
  ``repeat_interleave`` without ``output_size``, torchvision's ``nms``.

The operations are seen by a ``TorchDispatchMode`` (so calls made inside PyTorch or
torchvision count too, and backward's operations are seen as well) and, for the conversions
that never reach the dispatcher on a CPU tensor (``tolist``, ``numpy``, ``cpu``), by
temporarily wrapping those ``torch.Tensor`` methods. Not seen: ``.to("cpu")`` (on the CPU
it cannot be told apart from a move to the training device) and Python-side reads of
``Tensor.shape`` (never a sync).

On CUDA, ``cuda_debug=True`` also sets ``torch.cuda.set_sync_debug_mode("warn")`` and
counts the warnings of synchronising CUDA calls (:attr:`HostSyncs.cuda_warnings`): the
driver's own view, which also catches a ``.to("cpu")``.

Caveats: the method wrappers are process-wide while the block runs (not thread-safe:
calls from other threads count too), and ``torch.compile``'d functions called inside the
block run their Python code eagerly (``torch.compiler.set_stance("force_eager")``: Dynamo
does not trace under a dispatch mode). For a compiled function that is an upper bound: a
compiled graph has the eager code's syncs, less any that Inductor turned into device work.
"""
from __future__ import annotations

import contextlib
import traceback
import warnings
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncs", "SyncEvent", "count_host_syncs"]

# aten operations that hand values to the host. Under inference_mode the mode sees composite
# operations before they decompose (item, not _local_scalar_dense), so both levels are listed;
# an operation's own decomposition runs with the mode switched off, so nothing counts twice.
_READ_OPS = {"aten._local_scalar_dense", "aten.item", "aten.is_nonzero", "aten.equal", "aten.allclose"}
# aten operations whose output shape depends on values (index and index_put only with a boolean mask).
_SHAPE_OPS = {
    "aten.nonzero", "aten.nonzero_numpy", "aten.argwhere", "aten.masked_select", "aten.bincount",
    "aten.unique_consecutive", "aten._unique", "aten._unique2", "aten.unique_dim", "aten.unique_dim_consecutive",
    "torchvision.nms",
}
_MASK_INDEX_OPS = {"aten.index", "aten.index_put", "aten.index_put_", "aten._index_put_impl_"}
_WRAPPED_METHODS = ("tolist", "numpy", "cpu")
_THIS_FILE = str(Path(__file__).resolve())
_TORCH_DIR = str(Path(torch.__file__).resolve().parent)


@dataclass(frozen=True)
class SyncEvent:
    """One host sync: ``kind`` ``read`` or ``shape``, the operation, and the first caller outside torch."""

    kind: str
    op: str
    where: str


@dataclass
class HostSyncs:
    """What :func:`count_host_syncs` saw: the events in order, and the CUDA debug warnings."""

    events: List[SyncEvent] = field(default_factory=list)
    cuda_warnings: Optional[int] = None  # None: CUDA sync debugging was not on

    @property
    def total(self) -> int:
        """Host syncs seen (reads + data-dependent shapes)."""
        return len(self.events)

    @property
    def reads(self) -> int:
        return sum(e.kind == "read" for e in self.events)

    @property
    def shapes(self) -> int:
        return sum(e.kind == "shape" for e in self.events)

    def by_op(self) -> Dict[str, int]:
        """Count per operation, e.g. ``{"aten.nonzero": 3, "Tensor.tolist": 1}``."""
        return dict(Counter(e.op for e in self.events))

    def summary(self) -> str:
        """One line per (operation, caller) with its count: what to put in an assertion message."""
        if not self.events:
            return "no host syncs"
        counts = Counter((e.kind, e.op, e.where) for e in self.events)
        lines = [f"{self.total} host syncs ({self.reads} reads, {self.shapes} data-dependent shapes):"]
        lines += [f"  {n} x {op} ({kind}) at {where}" for (kind, op, where), n in counts.most_common()]
        return "\n".join(lines)


def _caller() -> str:
    """``file:line`` of the innermost frame outside torch and this module: the code to look at."""
    for frame in reversed(traceback.extract_stack()):
        path = str(Path(frame.filename).resolve()) if frame.filename and not frame.filename.startswith("<") else ""
        if path and path != _THIS_FILE and not path.startswith(_TORCH_DIR):
            return f"{path}:{frame.lineno}"
    return "?"


def _has_bool_index(indices: Any) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in (indices or ()))


class _HostCopies:
    """The tensors that ``cpu()`` made in the block, by identity (a WeakSet would compare tensors with ``==``)."""

    def __init__(self) -> None:
        self._refs: Dict[int, weakref.ref] = {}

    def add(self, tensor: torch.Tensor) -> None:
        key = id(tensor)
        self._refs[key] = weakref.ref(tensor, lambda _: self._refs.pop(key, None))

    def __contains__(self, tensor: object) -> bool:
        ref = self._refs.get(id(tensor))
        return ref is not None and ref() is tensor


class _SyncMode(TorchDispatchMode):
    """Sees every aten operation and records the ones that sync."""

    def __init__(self, record: Callable[[str, str], None], on_host: _HostCopies) -> None:
        super().__init__()
        self.record = record
        self.on_host = on_host

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        from_host = bool(tensors) and all(t in self.on_host for t in tensors)
        if name in _READ_OPS:
            if not from_host:
                self.record("read", name)
        elif name in _SHAPE_OPS or func is torch.ops.aten.where.default:  # where(condition) is nonzero
            self.record("shape", name)
        elif name in _MASK_INDEX_OPS and len(args) > 1 and _has_bool_index(args[1]):
            self.record("shape", f"{name} (boolean mask)")
        elif name == "aten.repeat_interleave" and kwargs.get("output_size") is None and (
                len(args) < 3 or args[2] is None) and isinstance(args[0], torch.Tensor) and (
                len(args) == 1 or isinstance(args[1], torch.Tensor)):
            # repeat_interleave(repeats) or (input, repeats: Tensor) without output_size: sums the repeats.
            self.record("shape", name)
        out = func(*args, **kwargs)
        if from_host:  # a view or result of host copies only (c[0] of c = t.cpu()) is on the host too
            for tensor in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(tensor, torch.Tensor):
                    self.on_host.add(tensor)
        return out


@contextlib.contextmanager
def count_host_syncs(cuda_debug: bool = False) -> Iterator[HostSyncs]:
    """Count host syncs in the ``with`` block (see the module docstring for what counts).

    Args:
        cuda_debug: also count CUDA's own synchronisation warnings
            (``torch.cuda.set_sync_debug_mode("warn")``); ignored without CUDA.

    Yields:
        a :class:`HostSyncs`, filled as the block runs (read it after the block).
    """
    syncs = HostSyncs()
    on_host = _HostCopies()

    def record(kind: str, op: str) -> None:
        syncs.events.append(SyncEvent(kind, op, _caller()))

    originals = {name: torch.Tensor.__dict__.get(name) for name in _WRAPPED_METHODS}
    base = {name: getattr(torch.Tensor, name) for name in _WRAPPED_METHODS}

    def wrap(name: str) -> Callable:
        method = base[name]

        def wrapped(self, *args, **kwargs):
            if self not in on_host:
                record("read", f"Tensor.{name}")
            out = method(self, *args, **kwargs)
            if name == "cpu":
                if out is self:  # a CPU tensor: alias it, so that the copy on a GPU run is told apart from the original
                    out = self.view_as(self)
                on_host.add(out)  # its later reads on the host are not syncs
            return out

        return wrapped

    cuda_on = cuda_debug and torch.cuda.is_available()
    previous_mode = torch.cuda.get_sync_debug_mode() if cuda_on else None
    with contextlib.ExitStack() as stack:
        if cuda_on:
            caught = stack.enter_context(warnings.catch_warnings(record=True))
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        # Dynamo refuses to trace under a dispatch mode (an error with fullgraph=True): run compiled code eagerly.
        stack.enter_context(torch.compiler.set_stance("force_eager"))
        for name in _WRAPPED_METHODS:
            setattr(torch.Tensor, name, wrap(name))
        try:
            with _SyncMode(record, on_host):
                yield syncs
        finally:
            for name, original in originals.items():
                if original is None:
                    delattr(torch.Tensor, name)
                else:
                    setattr(torch.Tensor, name, original)
            if cuda_on:
                torch.cuda.set_sync_debug_mode(previous_mode)
                syncs.cuda_warnings = sum("synchronizing" in str(w.message) for w in caught)
