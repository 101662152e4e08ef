"""Batches for the trainer: array datasets, mlx-data buffers and streams, sharding, position.

The trainer reads training data through :class:`BatchStream`, which walks epoch after epoch
and counts where it is (``epoch``, ``index`` = batches consumed in that epoch). A checkpoint
stores that position; resuming asks the source for the same epoch again and skips ``index``
batches. That gives the same order only if an epoch's order depends on nothing but its number:
:class:`ArrayBatches` shuffles with ``numpy.random.default_rng((seed, epoch))``; an mlx-data
buffer of batches, a list of batches or a callable ``epoch -> iterable`` are replayed as given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Sized
from typing import Any, cast

import mlx.core as mx
import numpy as np

Batch = Any  # a dict of arrays, or a tuple of arrays

__all__ = [
    "DEVICE_BYTES", "ArrayBatches", "BatchStream", "as_source", "load_arrays", "shard",
    "to_device",
]


def _is_array(x: Any) -> bool:
    return isinstance(x, (np.ndarray, mx.array))


def _mlx_data_types() -> tuple[type, ...]:
    try:
        import mlx.data as dx
    except ImportError:  # mlx-data is optional
        return ()
    # mlx.data's compiled module ships no stubs that name its classes
    module: Any = dx
    return (module.Buffer, module.Stream)


def load_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a dataset saved as ``.npz`` or ``.safetensors`` into a dict of numpy arrays.

    Raises:
        FileNotFoundError: naming the path when it does not exist.
        ValueError: when the extension is neither ``.npz`` nor ``.safetensors``.

    Example:
        >>> import tempfile, numpy as np
        >>> path = tempfile.mkdtemp() + "/d.npz"
        >>> np.savez(path, x=np.zeros((4, 2)), y=np.arange(4))
        >>> sorted(load_arrays(path))
        ['x', 'y']
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset file not found: {path}")
    if path.endswith(".npz"):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    if path.endswith(".safetensors"):
        # a .safetensors file loads as a dict (mx.load's stub is the union over formats)
        arrays = cast(dict[str, mx.array], mx.load(path))
        return {k: np.array(v) for k, v in arrays.items()}
    raise ValueError(f"dataset file must end in .npz or .safetensors: {path}")


# Arrays up to this many bytes in total are copied to the device once by default (see
# ArrayBatches); larger ones stay on the host, where only each batch is copied.
DEVICE_BYTES = 2**30

# NumPy dtype kinds that mx.array takes (bool, signed, unsigned, float, complex).
_MLX_KINDS = "biufc"


def _fits_device(arrays: Iterable[Any]) -> bool:
    """Whether arrays can sensibly live on the device: MLX dtypes, in memory, not too large."""
    size = 0
    for a in arrays:
        if isinstance(a, mx.array):
            continue
        if not isinstance(a, np.ndarray) or isinstance(a, np.memmap) \
                or a.dtype.kind not in _MLX_KINDS:
            return False
        size += a.nbytes
    return size <= DEVICE_BYTES


class ArrayBatches:
    """Fixed-size batches from in-memory arrays or an mlx-data buffer of samples.

    Each epoch is shuffled with ``numpy.random.default_rng((seed, epoch))``, so any epoch's
    order can be rebuilt from its number alone (which is what exact resume needs).

    With ``device=True`` the arrays are copied to the device once, and each batch is gathered
    there (``mx.take`` with the epoch's permutation, itself copied once per epoch; a plain
    slice when not shuffled): no NumPy gather and no host-to-device copy per step, and on
    unified memory no copy at all. The batches are then ``mx.array`` (what :func:`to_device`
    would give: float64 becomes float32), in exactly the host order. With ``device=False``
    each batch is a NumPy gather, copied by the trainer. The default (``None``) is ``True``
    for a dict or tuple of in-memory NumPy/MLX arrays with MLX dtypes totalling at most
    ``DEVICE_BYTES`` (1 GiB; the device copy is a second copy of the data), ``False`` for
    memory-mapped arrays, larger or other dtypes, and mlx-data buffers.

    Args:
        data: a dict of arrays (batches are dicts), a tuple of arrays (batches are tuples),
            an ``mlx.data.Buffer`` of samples (batches are dicts), or a path to a ``.npz`` /
            ``.safetensors`` file (loaded with :func:`load_arrays`). All arrays share the
            leading (sample) dimension.
        batch_size: samples per batch.
        shuffle: reshuffle every epoch.
        seed: base seed of the shuffle.
        drop_last: drop the final smaller batch (a new shape would retrace the compiled step).
        device: keep the arrays on the device and gather batches there (see above).

    Raises:
        ValueError: a bad ``batch_size``, arrays of different lengths, no batch at all, or
            ``device=True`` for data MLX cannot hold (an mlx-data buffer, strings, objects).

    Example:
        >>> import numpy as np
        >>> data = ArrayBatches({"x": np.arange(10.0), "y": np.arange(10)}, 4, shuffle=False)
        >>> len(data), data.device, [b["y"].tolist() for b in data.epoch(0)]
        (2, True, [[0, 1, 2, 3], [4, 5, 6, 7]])
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
        device: bool | None = None,
    ):
        if isinstance(data, (str, os.PathLike)):
            data = load_arrays(data)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if device is not None and not isinstance(device, bool):
            raise ValueError(f"device must be True, False or None (automatic), got {device!r}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        # an mlx.data Buffer of samples (no stubs), or the arrays; exactly one is not None
        self._buffer: Any = None
        self._arrays: dict[Any, Any] | tuple[Any, ...] | None
        if isinstance(data, dict):
            self._arrays = dict(data)
        elif isinstance(data, tuple):
            self._arrays = tuple(data)
        elif _mlx_data_types() and isinstance(data, _mlx_data_types()[0]):
            self._buffer = data
            self._arrays = None
        else:
            raise TypeError(
                "ArrayBatches data must be a dict or tuple of arrays, an mlx.data.Buffer of "
                f"samples, or a .npz/.safetensors path; got {type(data).__name__}"
            )
        if self._buffer is not None:
            self.num_samples = len(self._buffer)
        else:
            lengths = {len(v) for v in self._values()}
            if len(lengths) != 1:
                raise ValueError(f"arrays must share their leading dimension, got {lengths}")
            self.num_samples = lengths.pop()
        if len(self) == 0:
            raise ValueError(
                f"dataset of {self.num_samples} samples gives no batch of {batch_size}"
            )
        if device is None:
            device = self._buffer is None and _fits_device(self._values())
        elif device and self._buffer is not None:
            raise ValueError("device=True needs a dict or tuple of arrays, not an mlx.data.Buffer")
        self.device = device
        if self._buffer is not None:
            return
        try:
            # Host arrays become NumPy once here, not once per batch.
            convert = _to_mx if device else np.asarray
            if isinstance(self._arrays, dict):
                self._arrays = {k: convert(v) for k, v in self._arrays.items()}
            else:
                self._arrays = tuple(convert(v) for v in self._values())
        except (RuntimeError, TypeError, ValueError) as e:
            raise ValueError(
                f"ArrayBatches(device={device}) cannot convert the arrays ({e}); "
                f"pass device={not device}"
            ) from None

    def _values(self) -> Iterable[Any]:
        if self._arrays is None:
            raise RuntimeError("ArrayBatches over an mlx.data Buffer holds no arrays")
        return self._arrays.values() if isinstance(self._arrays, dict) else self._arrays

    def _rows(self, rows: slice | np.ndarray | mx.array) -> Batch:
        """The batch of the given rows (a slice, or an index array on the arrays' side)."""
        if isinstance(self._arrays, dict):
            return {k: _take_rows(v, rows) for k, v in self._arrays.items()}
        return tuple(_take_rows(v, rows) for v in self._values())

    def __len__(self) -> int:
        full, rest = divmod(self.num_samples, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Yield the batches of epoch ``epoch``, from batch ``start`` on.

        ``start`` lets a resumed run continue mid-epoch without reading the batches it
        already trained on. Batches are ``mx.array`` with ``device=True``, NumPy otherwise.
        """
        size = self.batch_size
        order: np.ndarray | None = None
        if self.shuffle:
            order = np.random.default_rng((self.seed, epoch)).permutation(self.num_samples)
        if self._buffer is not None:
            order = np.arange(self.num_samples) if order is None else order
            for b in range(start, len(self)):
                idx = order[b * size : (b + 1) * size]
                yield self._buffer.perm(idx).batch(len(idx))[0]
        elif order is not None and self.device:
            # One copy of the order per epoch; each batch is then a lazy gather, evaluated
            # with the training step that consumes it (built here with no per-array call
            # beyond the gathers: this runs once per training step).
            picks = mx.array(order)
            take = mx.take
            if isinstance(self._arrays, dict):
                items = list(self._arrays.items())
                for b in range(start, len(self)):
                    rows = picks[b * size:(b + 1) * size]
                    yield {k: take(v, rows, axis=0) for k, v in items}
            else:
                arrays = list(self._values())
                for b in range(start, len(self)):
                    rows = picks[b * size:(b + 1) * size]
                    yield tuple([take(v, rows, axis=0) for v in arrays])
        else:
            for b in range(start, len(self)):
                span = slice(b * size, (b + 1) * size)  # a plain slice copies nothing
                yield self._rows(span if order is None else order[span])


def _to_mx(array: Any) -> mx.array:
    return array if isinstance(array, mx.array) else mx.array(array)


def _take_rows(array: Any, rows: slice | np.ndarray | mx.array) -> Any:
    if isinstance(rows, mx.array):
        return mx.take(array, rows, axis=0)
    return array[rows]


class _Source:
    """Anything that can produce the batches of epoch ``e`` again, in the same order."""

    def __init__(self, epoch_fn: Callable[..., Iterable[Batch]], length: int | None,
                 can_start: bool = False):
        self.epoch = epoch_fn
        self.length = length
        # Whether epoch_fn(e, start=i) begins at batch i (resume without replaying).
        self.can_start = can_start


def as_source(data: Any, *, name: str = "training data") -> _Source:
    """Wrap ``data`` so that each epoch can be iterated (and replayed on resume).

    Accepted: an object with ``epoch(e)`` (like :class:`ArrayBatches`); an ``mlx.data.Buffer``
    whose elements are batches; an ``mlx.data.Stream`` of batches (``reset()`` between epochs);
    a callable ``e -> iterable of batches``; a re-iterable collection of batches (list);
    a one-shot iterator (one epoch only).
    """
    if data is None:
        raise ValueError(f"{name} is missing (got None)")
    if isinstance(data, (str, os.PathLike)):
        raise TypeError(
            f"{name}: got a path {os.fspath(data)!r}; wrap it as ArrayBatches(path, batch_size)"
        )
    if isinstance(data, dict) or (isinstance(data, tuple) and all(map(_is_array, data))):
        raise TypeError(
            f"{name}: got whole arrays, not batches; wrap them as ArrayBatches(data, batch_size)"
        )
    if hasattr(data, "epoch") and callable(data.epoch):
        # ``can_start = True`` declares ``epoch(e, start=i)``: resume at batch i, no replay
        can_start = isinstance(data, ArrayBatches) or getattr(data, "can_start", False) is True
        return _Source(data.epoch, len(data) if hasattr(data, "__len__") else None,
                       can_start=can_start)
    mlx_types = _mlx_data_types()
    if mlx_types and isinstance(data, mlx_types[0]):
        buffer: Any = data  # an mlx.data Buffer (no stubs)
        return _Source(lambda e: (buffer[i] for i in range(len(buffer))), len(buffer))
    if mlx_types and isinstance(data, mlx_types[1]):
        stream: Any = data  # an mlx.data Stream (no stubs)

        def stream_epoch(e: int) -> Iterable[Batch]:
            stream.reset()
            return stream

        return _Source(stream_epoch, None)
    if callable(data):
        return _Source(lambda e: data(e), None)
    if not isinstance(data, Iterable):
        raise TypeError(f"{name} must be iterable, got {type(data).__name__}")
    if iter(data) is data:  # a one-shot iterator: it can give only one epoch
        used: list[int] = []

        def once(e: int) -> Iterable[Batch]:
            if used:
                raise _OneShotSpent(
                    f"{name} is a one-shot iterator and ran out; pass a list, an mlx.data "
                    "Buffer/Stream, ArrayBatches or a callable epoch -> iterable for more epochs"
                )
            used.append(e)
            return data

        return _Source(once, None)
    return _Source(lambda e: data, len(data) if isinstance(data, Sized) else None)


class BatchStream:
    """Batches across epochs, with a position (``epoch``, ``index``) that can be restored.

    ``index`` counts the batches already taken from epoch ``epoch``. Restoring starts that
    epoch at batch ``index`` where the source can (:class:`ArrayBatches`), and otherwise
    replays the epoch from its start and skips ``index`` batches.

    Example:
        >>> s = BatchStream(as_source([(1,), (2,), (3,)]), epoch=0, index=2)
        >>> [s.next(), s.next(), (s.epoch, s.index)]
        [(3,), (1,), (1, 1)]
    """

    def __init__(self, source: _Source, epoch: int = 0, index: int = 0):
        self.source = source
        self.epoch = epoch
        self.index = 0
        self._ahead: list[Batch] = []
        if source.can_start and source.length is not None and index <= source.length:
            self._iter = iter(source.epoch(epoch, start=index))
            self.index = index
        else:
            self._iter = iter(source.epoch(epoch))
            for _ in range(index):
                self.next()
        if self.index != index or self.epoch != epoch:
            raise ValueError(
                f"cannot restore data position epoch={epoch} index={index}: the epoch has only "
                f"{self.index if self.epoch == epoch else 'fewer'} batches"
            )

    def _pull(self) -> None:
        """Fetch the next batch into the look-ahead slot, opening new epochs as needed.

        Raises:
            _Exhausted: the next epoch cannot start (no batch, or a spent one-shot iterator).
        """
        try:
            self._ahead.append((self.epoch, next(self._iter)))
        except StopIteration:
            self._ahead.append(self._open_next_epoch())

    def _open_next_epoch(self) -> tuple[int, Batch]:
        """The first batch of the next epoch, whose iterator becomes the current one."""
        if self.index == 0:
            raise _Exhausted(f"training data gave no batch in epoch {self.epoch}")
        try:
            next_iter = iter(self.source.epoch(self.epoch + 1))
            first = next(next_iter)
        except StopIteration:
            raise _Exhausted(f"training data gave no batch in epoch {self.epoch + 1}") from None
        except _OneShotSpent as e:
            raise _Exhausted(str(e)) from None
        self._iter = next_iter
        return self.epoch + 1, first

    def peek_epoch(self) -> int:
        """The epoch the next batch belongs to (fetched, not consumed); ``epoch + 1`` when the
        data cannot give another batch."""
        if not self._ahead:
            try:
                self._pull()
            except _Exhausted:
                return self.epoch + 1
        return self._ahead[0][0]

    def next(self) -> Batch:
        """Take the next batch. Raises ValueError when the data cannot give one."""
        if self._ahead:
            epoch, batch = self._ahead.pop(0)
        else:
            try:  # the common case, once per training step: the epoch goes on
                epoch, batch = self.epoch, next(self._iter)
            except StopIteration:
                try:
                    epoch, batch = self._open_next_epoch()
                except _Exhausted as e:
                    raise ValueError(str(e)) from None
        if epoch != self.epoch:
            self.epoch, self.index = epoch, 0
        self.index += 1
        return batch


class _Exhausted(Exception):
    """The batch stream cannot open another epoch."""


class _OneShotSpent(Exception):
    """A one-shot iterator was asked for a second epoch."""


def to_device(batch: Batch) -> Batch:
    """Turn a batch (dict or tuple of array-likes) into the same structure of ``mx.array``.

    Raises:
        TypeError: if the batch is neither a dict nor a tuple/list.
        ValueError: if its arrays disagree on the leading (batch) dimension.

    Example:
        >>> import numpy as np
        >>> to_device({"x": np.ones((2, 3)), "y": np.zeros(2)})["x"].shape
        (2, 3)
    """
    out: dict[Any, mx.array] | tuple[mx.array, ...]
    if isinstance(batch, dict):
        out = {k: v if isinstance(v, mx.array) else mx.array(v) for k, v in batch.items()}
        arrays: Collection[mx.array] = out.values()
    elif isinstance(batch, (tuple, list)):
        out = tuple([v if isinstance(v, mx.array) else mx.array(v) for v in batch])
        arrays = out
    else:
        raise TypeError(f"a batch must be a dict or a tuple of arrays, got {type(batch).__name__}")
    if not arrays:
        raise ValueError("a batch must hold at least one array")
    # one set of leading sizes (this runs once per training step)
    sizes = {v.shape[0] if v.ndim else None for v in arrays}
    if None in sizes or len(sizes) != 1:
        items = out.items() if isinstance(out, dict) else enumerate(out)
        shapes = {k: tuple(v.shape) for k, v in items}
        raise ValueError(f"batch arrays must share the leading (batch) dimension, got {shapes}")
    return out


def batch_size_of(batch: Batch) -> int:
    """Rows in a batch (its arrays' leading dimension)."""
    first = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return first.shape[0]


def shard(batch: Batch, rank: int, size: int) -> Batch:
    """The ``rank``-th of ``size`` equal slices of a batch along its leading dimension.

    Raises:
        ValueError: if the batch size is not a multiple of ``size``.

    Example:
        >>> import mlx.core as mx
        >>> shard((mx.arange(6),), 1, 2)[0].tolist()
        [3, 4, 5]
    """
    if size == 1:
        return batch
    n = batch_size_of(batch)
    if n % size:
        raise ValueError(f"global batch of {n} rows cannot be split evenly over {size} ranks")
    lo, hi = rank * n // size, (rank + 1) * n // size
    if isinstance(batch, dict):
        return {k: v[lo:hi] for k, v in batch.items()}
    return tuple(v[lo:hi] for v in batch)
