"""Checkpoints: safetensors for arrays, JSON for everything else, verified by a manifest.

A checkpoint (format 2) is a directory ``<run_dir>/checkpoints/step_<8 digits>/`` holding

``model.safetensors``
    every parameter of the model (``model.parameters()``, frozen ones included);
``optimizer.safetensors``
    the flattened optimizer state: ``step`` (uint64), ``learning_rate``, every scheduled
    hyperparameter, ``lr_factor`` when reduce-on-plateau is on, and per-parameter moments;
``meta.json``
    format version, step, data position, base seed, log position, callback state, run config;
``manifest.json``
    written last: the byte size and digest of each of the files above, under the name of the
    hash that made it: ``"blake3"`` when the ``blake3`` package is installed, ``"sha256"``
    otherwise and in checkpoints written before BLAKE3 (both load; see
    :mod:`trainers.digests` for what the digest guarantees).

It is first written as ``step_<n>.tmp/`` (every file fsynced, the manifest last) and then
renamed, so a run killed while writing leaves either the complete directory or a ``.tmp`` one,
which is ignored and later removed by :func:`prune_checkpoints`. Nothing is pickled.

Loading verifies sizes and digests before anything is changed, so a checkpoint altered in
place, truncated or half-copied is reported, naming the file, instead of being used. Each
array file is read once: its digest is computed from the bytes MLX read (the header, then each
array's memory in file order), so what is verified is exactly what is loaded, at little more
than the cost of a plain ``mx.load``; :func:`verify_checkpoint` alone hashes the files as it
reads them, in parallel threads. :func:`find_resumable` picks the newest checkpoint that
verifies and reports the newer ones that did not (and can keep what it read for the load that
follows); :func:`quarantine` renames a bad one to ``step_<n>.corrupt`` (kept for inspection,
never deleted, ignored by listing and pruning).

**Format 1** (before manifests): a directory without ``manifest.json`` whose ``meta.json`` says
``"format_version": 1`` is still listed and loaded, with a warning that it is unverified. To
migrate one, load it and save it again (:func:`load_checkpoint`, then :func:`save_checkpoint`
with the returned meta), or resume the run: its next checkpoint is format 2.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten

from . import digests, files
from .errors import CheckpointError, CheckpointFileMissing, StorageError

__all__ = [
    "FORMAT_VERSION",
    "TRAINER_META_KEYS",
    "drop_kept",
    "find_resumable",
    "finite_flags",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "quarantine",
    "read_checkpoint_arrays",
    "read_meta",
    "save_checkpoint",
    "verify_checkpoint",
]

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
_FILES = ("model.safetensors", "optimizer.safetensors", "meta.json")
# Written when the trainer's step owns arrays of its own (EMA weights, the float16 loss scale).
TRAIN_STATE = "train_state.safetensors"
_NAME = re.compile(r"^step_(\d{8,})$")
_TMP = re.compile(r"^step_\d{8,}(\.old)?\.tmp$")
_CORRUPT = ".corrupt"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

# What the trainer writes into meta.json, and the type each must have; the trainer passes
# ``required=TRAINER_META_KEYS`` to :func:`load_checkpoint`. ``None`` in a tuple: may be null.
_META_TYPES: dict[str, Any] = {
    "format_version": int,
    "step": int,
    "seed": int,
    "data_position": {"epoch": int, "index": int},
    "log_position": (None, {"jsonl": int, "csv": int}),
    "callbacks": dict,
    "config": dict,
    "run_id": (None, str),
    "ended": (None, {"step": int, "reason": str}),
}
TRAINER_META_KEYS = ("step", "seed", "data_position", "log_position", "callbacks", "config")


def _checkpoint_name(step: int) -> str:
    return f"step_{step:08d}"


def _is_real_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_meta_format(path: str) -> Any:
    """The ``format_version`` in ``path/meta.json``, or ``None`` when unreadable."""
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta.get("format_version") if isinstance(meta, dict) else None


def _is_complete(path: str) -> bool:
    """Format 2 with its manifest (written last), or format 1 (no manifest)."""
    if not _is_real_dir(path):
        return False
    if os.path.lexists(os.path.join(path, MANIFEST)):
        return True
    return _read_meta_format(path) == 1


def _step_dirs(root: str) -> list[tuple[int, str]]:
    """Every ``step_<n>`` entry under ``root`` (complete or not), oldest first."""
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for name in names:
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(root, name)))
    return sorted(found)


def list_checkpoints(root: str) -> list[tuple[int, str]]:
    """Complete checkpoints under ``root`` as ``(step, path)``, oldest first.

    Complete means written to the end: a format-2 directory holding its manifest (verify its
    content with :func:`verify_checkpoint`), or a format-1 one. Temporary (``.tmp``),
    quarantined (``.corrupt``) and incomplete directories and symbolic links are not listed.

    Example:
        >>> list_checkpoints("/nonexistent")
        []
    """
    return [(step, path) for step, path in _step_dirs(root) if _is_complete(path)]


def save_checkpoint(
    root: str, step: int, model: nn.Module, optimizer: optim.Optimizer, meta: dict[str, Any],
    *, train_state: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint of ``model`` and ``optimizer`` after ``step`` updates; return its path.

    ``meta`` must be JSON-serialisable; ``step`` and ``format_version`` are added to it.
    ``train_state`` (the trainer step's own arrays: EMA weights, loss scale), when not empty,
    is saved as ``train_state.safetensors`` and covered by the manifest.
    ``root`` (the run's ``checkpoints`` directory) is created if missing and must not be a
    symbolic link. A checkpoint of the same step is replaced when it verifies, and quarantined
    (renamed ``.corrupt``) when it does not: nothing unverified is deleted.

    Raises:
        StorageError: (an ``OSError``) a file could not be written; the message names it and
            the cause ("disk full", "permission denied"...). The temporary directory is removed
            and every older checkpoint is left as it was.
        UnsafePathError: ``root`` or the temporary directory's name is a symbolic link.
        TypeError: ``meta`` is not JSON-serialisable (nothing written).

    Example:
        >>> import tempfile, mlx.nn as nn, mlx.optimizers as optim
        >>> model, opt = nn.Linear(2, 1), optim.SGD(learning_rate=0.1)
        >>> opt.init(model.trainable_parameters())
        >>> path = save_checkpoint(tempfile.mkdtemp(), 0, model, opt, {})
        >>> sorted(os.listdir(path))
        ['manifest.json', 'meta.json', 'model.safetensors', 'optimizer.safetensors']
        >>> verify_checkpoint(path)  # raises on any missing or altered byte
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    meta = {**meta, "format_version": FORMAT_VERSION, "step": step}
    meta_bytes = files.json_bytes(meta)  # TypeError here, before anything is written
    # The run directory (root's parent) may be a link; root itself, inside it, may not.
    files.ensure_dir(root, root=os.path.dirname(os.path.abspath(root)))
    final = os.path.join(root, _checkpoint_name(step))
    tmp = final + ".tmp"
    files.remove_tree(tmp)  # a save killed half-way; a link is removed, never followed
    try:
        os.mkdir(tmp)
    except OSError as e:
        raise files.storage_error(e, tmp, "create") from e
    try:
        entries = {}
        algorithm = digests.default_algorithm()
        weights = dict(tree_flatten(model.parameters()))
        # Each file is fsynced in the background while the next is written; all are on disk
        # before the manifest, written last, says they are complete.
        with files.BackgroundSync() as syncer:
            entries["model.safetensors"] = files.save_safetensors(
                os.path.join(tmp, "model.safetensors"), weights, algorithm=algorithm,
                syncer=syncer)
            entries["optimizer.safetensors"] = files.save_safetensors(
                os.path.join(tmp, "optimizer.safetensors"), dict(tree_flatten(optimizer.state)),
                algorithm=algorithm, syncer=syncer)
            if train_state:
                entries[TRAIN_STATE] = files.save_safetensors(
                    os.path.join(tmp, TRAIN_STATE), dict(tree_flatten(train_state)),
                    algorithm=algorithm, syncer=syncer)
            entries["meta.json"] = _write_new(os.path.join(tmp, "meta.json"), meta_bytes,
                                              algorithm, syncer)
            syncer.wait()
        manifest = {
            "format_version": FORMAT_VERSION,
            "files": {name: {"bytes": size, algorithm: digest}
                      for name, (size, digest) in entries.items()},
        }
        _write_new(os.path.join(tmp, MANIFEST), files.json_bytes(manifest), algorithm)
        files.call_storage("write", tmp, lambda: files.fsync_dir(tmp))
        if os.path.lexists(final):  # the same step saved again (a resumed run's final save)
            _replace_same_step(final)
        files.call_storage("rename", final, lambda: os.replace(tmp, final))
    except BaseException:
        try:
            files.remove_tree(tmp)
        except OSError:
            pass  # the original error says more than a failed cleanup
        raise
    # The checkpoint is in place; if this fails its rename may not survive a power loss.
    files.call_storage("write", final, lambda: files.fsync_dir(root))
    return final


def _write_new(path: str, data: bytes, algorithm: str,
               syncer: files.BackgroundSync | None = None) -> tuple[int, str]:
    with files.NewFile(path, algorithm=algorithm, syncer=syncer) as f:
        f.write(data)
    return f.size, f.digest


def _replace_same_step(final: str) -> None:
    try:
        verify_checkpoint(final)
    except (CheckpointError, OSError):
        quarantine(final)
        return
    _delete(final)


def _delete(path: str) -> None:
    """Remove a checkpoint so that a kill half-way leaves nothing that looks like one: it is
    first renamed to a temporary name (removed by the next :func:`prune_checkpoints`)."""
    doomed = path + ".old.tmp"
    files.remove_tree(doomed)
    files.call_storage("rename", path, lambda: os.rename(path, doomed))
    files.remove_tree(doomed)


def quarantine(path: str) -> str:
    """Rename a bad checkpoint to ``<name>.corrupt`` (or ``.corrupt-2``, ...); return the name.

    The directory is kept for inspection and never deleted by this module; listing, pruning
    and resuming ignore it.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> os.mkdir(os.path.join(root, "step_00000004"))  # empty: a broken copy
        >>> os.path.basename(quarantine(os.path.join(root, "step_00000004")))
        'step_00000004.corrupt'
        >>> list_checkpoints(root), sorted(os.listdir(root))
        ([], ['step_00000004.corrupt'])
    """
    path = os.path.normpath(os.fspath(path))
    target, n = path + _CORRUPT, 1
    while os.path.lexists(target):
        n += 1
        target = f"{path}{_CORRUPT}-{n}"
    files.call_storage("rename", path, lambda: os.rename(path, target))
    files.call_storage("write", target, lambda: files.fsync_dir(os.path.dirname(path) or "."))
    return target


def prune_checkpoints(root: str, keep: int, *, intact: str | None = None) -> None:
    """Delete all but the newest ``keep`` checkpoints, and leftover ``step_<n>.tmp`` directories.

    The newest checkpoint that verifies is never deleted, even when newer ones (which did not
    verify) fill the ``keep`` places: it is kept in addition. ``intact`` names a checkpoint
    known to be intact (the one just saved) so that it need not be read again. Quarantined
    (``.corrupt``) and incomplete directories are never touched. ``keep <= 0`` only removes
    the leftover temporary directories.

    Example:
        >>> import tempfile, mlx.nn as nn, mlx.optimizers as optim
        >>> root = tempfile.mkdtemp()
        >>> model, opt = nn.Linear(2, 1), optim.SGD(learning_rate=0.1)
        >>> for step in (1, 2, 3):
        ...     _ = save_checkpoint(root, step, model, opt, {})
        >>> prune_checkpoints(root, 2)
        >>> [step for step, _ in list_checkpoints(root)]
        [2, 3]
    """
    for name in os.listdir(root) if _is_real_dir(root) else []:
        if _TMP.match(name):
            files.remove_tree(os.path.join(root, name))
    if keep <= 0:
        return
    found = list_checkpoints(root)
    kept = {path for _, path in found[-keep:]}
    for _, path in reversed(found):
        if intact is not None and os.path.normpath(path) == os.path.normpath(intact):
            kept.add(path)
            break
        try:
            verify_checkpoint(path)
        except (CheckpointError, OSError):
            continue
        kept.add(path)
        break
    for _, path in found:
        if path not in kept:
            _delete(path)


# ------------------------------------------------------------------ verification
def _load_json(path: str, what: str) -> Any:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointFileMissing(f"checkpoint file missing: {path}") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise CheckpointError(f"corrupt checkpoint file {path}: {what} is not valid JSON: {e}"
                              ) from e
    except OSError as e:
        raise files.storage_error(e, path, "read") from e


def _read_manifest(path: str) -> dict[str, tuple[int, str, str]] | None:
    """The manifest's ``{file: (bytes, algorithm, digest)}``; ``None`` for a format-1
    checkpoint."""
    manifest_path = os.path.join(path, MANIFEST)
    if not os.path.lexists(manifest_path):
        version = _read_meta_format(path)
        if version == 1:
            warnings.warn(
                f"checkpoint {path} has format 1 (no manifest): its content is not verified; "
                "resume and save again to get a verified checkpoint", stacklevel=4)
            return None
        raise CheckpointFileMissing(
            f"checkpoint file missing: {manifest_path} (an incomplete or damaged checkpoint)")
    manifest = _load_json(manifest_path, "the manifest")
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(entries, dict):
        raise CheckpointError(f"corrupt checkpoint file {manifest_path}: no 'files' table")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{manifest_path}: unsupported checkpoint format {manifest.get('format_version')!r}"
            f" (this version reads {FORMAT_VERSION} and 1)")
    out = {}
    for name in (*_FILES, *([TRAIN_STATE] if TRAIN_STATE in entries else [])):
        entry = entries.get(name)
        size = entry.get("bytes") if isinstance(entry, dict) else None
        found = [a for a in digests.ALGORITHMS if isinstance(entry, dict) and a in entry]
        digest = entry.get(found[0]) if len(found) == 1 and isinstance(entry, dict) else None
        if (not isinstance(size, int) or isinstance(size, bool) or size < 0
                or not isinstance(digest, str) or not _HEX64.match(digest)):
            raise CheckpointError(
                f"corrupt checkpoint file {manifest_path}: no valid entry for {name!r} "
                "(expected {'bytes': <int>, 'blake3' or 'sha256': <64 hex digits>})")
        out[name] = (size, found[0], digest)
    return out


def _open_checked(path: str, size: int) -> int:
    """Open a checkpoint file for reading (never through a link) and check its size."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise CheckpointFileMissing(f"checkpoint file missing: {path}") from None
    except OSError as e:
        if os.path.islink(path):
            raise CheckpointError(f"checkpoint file {path} is a symbolic link") from None
        raise files.storage_error(e, path, "read") from e
    found = os.fstat(fd).st_size
    if found != size:
        os.close(fd)
        raise CheckpointError(
            f"corrupt checkpoint file {path}: {found} bytes, the manifest says {size} "
            "(truncated or overwritten)")
    return fd


def _check_files(path: str, manifest: dict[str, tuple[int, str, str]]) -> None:
    """Check every file's size, then hash them all in parallel threads and compare."""
    opened: list[tuple[str, int, int, str, str]] = []
    try:
        for name, (size, algorithm, digest) in manifest.items():
            full = os.path.join(path, name)
            opened.append((full, _open_checked(full, size), size, algorithm, digest))
        try:
            found = digests.file_digests([(fd, size, a) for _, fd, size, a, _ in opened])
        except OSError as e:
            raise files.storage_error(e, path, "read") from e
    finally:
        for _, fd, _, _, _ in opened:
            os.close(fd)
    for (full, _, _, algorithm, digest), got in zip(opened, found, strict=True):
        if got != digest:
            raise CheckpointError(
                f"corrupt checkpoint file {full}: its {digests.label(algorithm)} differs from "
                "the manifest's (the file was altered after it was saved)")


def _safetensors_layout(fd: int, path: str, size: int) -> tuple[bytes, list[tuple[str, int]]]:
    """A safetensors file's leading bytes (length prefix and JSON header) and its tensors'
    ``(name, bytes)`` in file order, checked to tile the rest of the file exactly."""
    def bad(why: str) -> CheckpointError:
        return CheckpointError(f"corrupt checkpoint file {path}: {why}")

    prefix = os.pread(fd, 8, 0)
    if len(prefix) < 8:
        raise bad("shorter than a safetensors header")
    length = int.from_bytes(prefix, "little")
    if length > size - 8:
        raise bad(f"its header claims {length} bytes, more than the file holds")
    header = prefix + os.pread(fd, length, 8)
    try:
        table = json.loads(header[8:].decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"its header is not valid JSON: {e}") from e
    spans = []
    for name, entry in table.items() if isinstance(table, dict) else []:
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise bad(f"no valid data_offsets for {name!r} in its header")
        spans.append((offsets[0], offsets[1], name))
    spans.sort()
    end = 0
    for begin, stop, name in spans:
        if begin != end or stop < begin:
            raise bad(f"its header's offsets leave a gap or overlap at {name!r}")
        end = stop
    if 8 + length + end != size:
        raise bad(f"its header describes {8 + length + end} bytes, the file holds {size}")
    return header, [(name, stop - begin) for begin, stop, name in spans]


def _digest_of_loaded(algorithm: str, header: bytes, layout: list[tuple[str, int]],
                      arrays: dict[str, mx.array]) -> str | None:
    """The digest of the file ``arrays`` were read from, computed from the header and the
    arrays' own memory (no second read of the file); ``None`` when the arrays do not fit the
    layout."""
    digest = digests.Digest(algorithm)
    digest.update(header)
    if len(arrays) != len(layout):
        return None
    for name, size in layout:
        value = arrays.get(name)
        if value is None or value.nbytes != size:
            return None
        if size:
            # no copy: the array's own bytes (MLX arrays export the buffer protocol; the
            # stubs do not say so)
            digest.update(memoryview(cast(Any, value)).cast("B"))
    return digest.hexdigest()


class _Loaded(NamedTuple):
    """One array file of a checkpoint, read and verified: its arrays, and the names of those
    holding NaN or inf (checked while the file was hashed)."""
    arrays: dict[str, mx.array]
    non_finite: list[str]


def _read_verified(path: str) -> dict[str, _Loaded] | None:
    """Every safetensors file of a checkpoint, read once and verified against the manifest.

    Each file is read by MLX, and its digest computed from the bytes MLX read (the header
    read here, then every array's memory in file order): what is checked is exactly what is
    loaded, with one read of each file. The other files (``meta.json``) are hashed as read.
    A file that MLX cannot parse is hashed as read, so that an altered file is reported as
    altered. Returns ``None`` for a format-1 checkpoint (no manifest; nothing verified).
    """
    path = os.fspath(path)
    manifest = _manifest_of(path)
    if manifest is None:
        return None
    tensors = {name: entry for name, entry in manifest.items() if name.endswith(".safetensors")}
    _check_files(path, {name: e for name, e in manifest.items() if name not in tensors})
    layouts, loaded = {}, {}
    for name, (size, algorithm, _) in tensors.items():
        digests.Digest(algorithm)  # DigestUnavailable before anything is read
        full = os.path.join(path, name)
        fd = _open_checked(full, size)
        try:
            layouts[name] = _safetensors_layout(fd, full, size)
            loaded[name] = cast(dict[str, mx.array], mx.load(full))
        except (CheckpointError, RuntimeError, ValueError) as e:
            _check_files(path, {name: manifest[name]})  # altered: says so, naming the file
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"corrupt checkpoint file {full}: {e}") from e
        except OSError as e:
            raise files.storage_error(e, full, "read") from e
        finally:
            os.close(fd)
    try:
        mx.eval(loaded)  # host waits: every file read now, all at once
    except (RuntimeError, ValueError) as e:
        _check_files(path, tensors)
        raise CheckpointError(f"corrupt checkpoint {path}: {e}") from e
    # Hash in a second thread while this one checks finiteness: both read the same memory,
    # and both NumPy and the hashes release the GIL. A digest error is reported first.
    with ThreadPoolExecutor(max_workers=1) as pool:
        found = [pool.submit(_digest_of_loaded, algorithm, *layouts[name], loaded[name])
                 for name, (_, algorithm, _) in tensors.items()]
        non_finite = {name: _non_finite(arrays) for name, arrays in loaded.items()}
        for future, (name, (_, algorithm, digest)) in zip(found, tensors.items(), strict=True):
            if future.result() != digest:
                raise CheckpointError(
                    f"corrupt checkpoint file {os.path.join(path, name)}: its "
                    f"{digests.label(algorithm)} differs from the manifest's (the file was "
                    "altered after it was saved)")
    return {name: _Loaded(arrays, non_finite[name]) for name, arrays in loaded.items()}


def read_checkpoint_arrays(path: str) -> dict[str, dict[str, mx.array]]:
    """Every array file of a checkpoint (``model.safetensors``, ``optimizer.safetensors``,
    ``train_state.safetensors`` when present), read once, verified against the manifest and
    checked finite: ``{file name: {array name: array}}``.

    What :func:`load_checkpoint` reads, for a program that wants the arrays without a model
    and optimizer to put them into (the trainer's ``restore_best`` takes the weights from it).
    A format-1 checkpoint (no manifest) is read unverified, with a warning.

    Raises:
        CheckpointError: a file is missing, altered, truncated or holds NaN or inf (named).
        FileNotFoundError: ``path`` is not a directory.

    Example:
        >>> import tempfile, mlx.nn as nn, mlx.optimizers as optim
        >>> path = save_checkpoint(tempfile.mkdtemp(), 1, nn.Linear(2, 1), optim.SGD(0.1), {})
        >>> arrays = read_checkpoint_arrays(path)
        >>> sorted(arrays), sorted(arrays["model.safetensors"])
        (['model.safetensors', 'optimizer.safetensors'], ['bias', 'weight'])
    """
    path = os.fspath(path)
    loaded = _read_verified(path)
    if loaded is not None:
        names = list(loaded)
    else:  # format 1: the files there are
        names = [*_FILES[:2], *([TRAIN_STATE] if _has_train_state(path) else [])]
    out = {}
    for name in names:
        file = _loaded(path, loaded, name)
        _check_finite(path, file, name)
        out[name] = file.arrays
    return out


def verify_checkpoint(path: str) -> None:
    """Check that every file of a checkpoint is present with its recorded size and digest
    (BLAKE3 or SHA-256, as the manifest says; see :mod:`trainers.digests`).

    A format-1 checkpoint (no manifest) passes with a warning, unverified.

    Raises:
        CheckpointError: naming the file and the reason: the manifest or a file is missing
            (then also a ``FileNotFoundError``), a size or checksum differs, the manifest is
            not valid JSON.
        FileNotFoundError: ``path`` is not a directory.

    Example:
        >>> import tempfile, mlx.nn as nn, mlx.optimizers as optim
        >>> path = save_checkpoint(tempfile.mkdtemp(), 3, nn.Linear(2, 1), optim.SGD(0.1), {})
        >>> with open(os.path.join(path, "meta.json"), "r+b") as f:
        ...     _ = f.write(b"[")  # one byte altered in place, same size
        >>> verify_checkpoint(path)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        trainers.errors.CheckpointError: corrupt checkpoint file .../meta.json: its ... differs ...
    """
    path = os.fspath(path)
    manifest = _manifest_of(path)
    if manifest is not None:
        _check_files(path, manifest)


def _manifest_of(path: str) -> dict[str, tuple[int, str, str]] | None:
    """The manifest of the checkpoint directory ``path`` (``None``: format 1), after checking
    that ``path`` is a directory and not a link."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint directory not found: {path}")
    if os.path.islink(path):
        raise CheckpointError(f"checkpoint {path} is a symbolic link")
    return _read_manifest(path)


# What find_resumable(keep_loaded=True) read of the checkpoint it chose, for the
# load_checkpoint of the same checkpoint that follows (a resume then reads each file once):
# [(path, identity of its files, what was read)]; at most one, taken by the next load.
_KEPT: list[tuple[str, tuple | None, dict[str, _Loaded]]] = []


def _identity(path: str) -> tuple | None:
    """Each file's name, inode, size and modification time: changes when a file does."""
    found = []
    try:
        for name in sorted(os.listdir(path)):
            st = os.lstat(os.path.join(path, name))
            found.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
    except OSError:
        return None
    return tuple(found)


def _take_kept(path: str) -> dict[str, _Loaded] | None:
    """What find_resumable kept of ``path``, if its files are unchanged since (then taken)."""
    if not _KEPT:
        return None
    kept_path, identity, loaded = _KEPT.pop()
    if os.path.normpath(kept_path) != os.path.normpath(path):
        return None
    return loaded if identity is not None and _identity(path) == identity else None


def drop_kept() -> None:
    """Forget what :func:`find_resumable` kept for a load that will not come (memory)."""
    _KEPT.clear()


def find_resumable(root: str, *, quarantine_bad: bool = False, required: Iterable[str] = (),
                   keep_loaded: bool = False) -> tuple[str | None, list[tuple[str, str]]]:
    """The newest checkpoint under ``root`` fit to resume from, and the newer ones that are not.

    Every ``step_<n>`` entry is tried, newest first: it must verify (:func:`verify_checkpoint`),
    hold a readable ``meta.json`` with every key in ``required`` (as :func:`load_checkpoint`)
    and only finite values in every array (weights, optimizer state, the trainer's own
    state). Returns ``(path or None, [(path, reason), ...])`` with the rejected newer
    entries, newest first. With ``quarantine_bad`` each rejected one is renamed ``.corrupt``
    (:func:`quarantine`) and reported under its new name; nothing is ever deleted.

    Finding a checkpoint fit to resume reads all of it. With ``keep_loaded`` what was read is
    kept for the :func:`load_checkpoint` of the same checkpoint that comes next (the trainer's
    resume), which then uses it instead of reading the files again, provided they are
    unchanged (same inode, size and modification time); :func:`drop_kept` releases it when no
    load follows.

    Example:
        >>> import tempfile, mlx.nn as nn, mlx.optimizers as optim
        >>> root = tempfile.mkdtemp()
        >>> good = save_checkpoint(root, 4, nn.Linear(2, 1), optim.SGD(0.1), {})
        >>> os.mkdir(os.path.join(root, "step_00000008"))  # killed while copying, say
        >>> path, bad = find_resumable(root)
        >>> path == good, [(os.path.basename(p), r[:23]) for p, r in bad]
        (True, [('step_00000008', 'checkpoint file missing')])
    """
    rejected: list[tuple[str, str]] = []
    for _, path in reversed(_step_dirs(root)):
        try:
            if not _is_real_dir(path):
                raise CheckpointError(f"checkpoint {path} is not a directory (a symbolic link "
                                      "or a file)")
            identity = _identity(path)  # before reading: a change while reading shows
            loaded = _read_verified(path)
            _check_meta(_load_json(os.path.join(path, "meta.json"), "meta.json"),
                        os.path.join(path, "meta.json"), required)
            for name in (*_FILES[:2], *([TRAIN_STATE] if _has_train_state(path) else [])):
                _check_finite(path, _loaded(path, loaded, name), name)
        except (CheckpointError, StorageError) as e:
            if quarantine_bad:
                path = quarantine(path)
            rejected.append((path, str(e)))
            continue
        _KEPT.clear()
        if keep_loaded and loaded is not None:
            _KEPT.append((path, identity, loaded))
        return path, rejected
    return None, rejected


# ------------------------------------------------------------------ loading
def _type_name(spec: Any) -> str:
    if isinstance(spec, tuple):
        return " or ".join("null" if s is None else _type_name(s) for s in spec)
    if isinstance(spec, dict):
        return "an object {" + ", ".join(f"{k!r}: {_type_name(v)}" for k, v in spec.items()) + "}"
    return {int: "an int", dict: "an object", str: "a string"}.get(spec, spec.__name__)


def _matches(value: Any, spec: Any) -> bool:
    if isinstance(spec, tuple):
        return any(value is None if s is None else _matches(value, s) for s in spec)
    if isinstance(spec, dict):
        return isinstance(value, dict) and all(
            k in value and _matches(value[k], v) for k, v in spec.items())
    if spec is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, spec)


def _check_meta(meta: Any, meta_path: str, required: Iterable[str]) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
        raise CheckpointError(
            f"{meta_path}: field 'format_version' is {version!r}: unsupported "
            f"(this version reads 1 and {FORMAT_VERSION})")
    for key in ("step", *required):
        if key not in meta:
            raise CheckpointError(f"{meta_path}: field {key!r} is missing")
    for key, spec in _META_TYPES.items():
        if key in meta and not _matches(meta[key], spec):
            raise CheckpointError(
                f"{meta_path}: field {key!r} is {json.dumps(meta[key])[:80]}, expected "
                f"{_type_name(spec)}")
    if meta["step"] < 0:
        raise CheckpointError(f"{meta_path}: field 'step' is {meta['step']}, expected >= 0")
    position = meta.get("data_position")
    if position is not None and min(position["epoch"], position["index"]) < 0:
        raise CheckpointError(f"{meta_path}: field 'data_position' holds a negative number")
    return meta


def read_meta(path: str, *, required: Iterable[str] = ()) -> dict[str, Any]:
    """A checkpoint's ``meta.json``, its fields checked (as :func:`load_checkpoint` does), without
    loading or verifying the arrays: what a resume compares before it changes anything.

    Raises:
        CheckpointError: the file is missing, not JSON, or a field is missing or mistyped.
    """
    meta_path = os.path.join(os.fspath(path), "meta.json")
    return _check_meta(_load_json(meta_path, "meta.json"), meta_path, required)


def _read_arrays(path: str) -> dict[str, mx.array]:
    if not os.path.exists(path):
        raise CheckpointFileMissing(f"checkpoint file missing: {path}")
    try:
        # A .safetensors file loads as a dict (mx.load's stub is the union over formats)
        arrays = cast(dict[str, mx.array], mx.load(path))
        mx.eval(arrays)  # host waits: read the file now, before it could be pruned
    except (RuntimeError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint file {path}: {e}") from e
    return arrays


def _has_train_state(path: str) -> bool:
    return os.path.lexists(os.path.join(path, TRAIN_STATE))


_WHAT = {"model.safetensors": "weights", "optimizer.safetensors": "optimizer state",
         TRAIN_STATE: "trainer state (EMA weights, loss scale)"}


def finite_flags(arrays: list[mx.array]) -> list[bool]:
    """Whether each array is finite everywhere. On the CPU backend NumPy checks the arrays in
    place (their memory, no copy; several times faster than MLX's CPU reduction, and this
    runs over every weight at every load); elsewhere, and for dtypes NumPy lacks (bfloat16),
    one MLX reduction.

    Example:
        >>> finite_flags([mx.array([1.0, 2.0]), mx.array([float("nan")], dtype=mx.bfloat16)])
        [True, False]
    """
    flags: list[bool | None] = [None] * len(arrays)
    if mx.default_device() == mx.cpu:
        for i, v in enumerate(arrays):
            try:
                host = np.asarray(v)
            except (TypeError, ValueError, RuntimeError):
                continue
            if host.dtype.kind in "fc":
                # A finite sum proves every element finite (NaN and inf propagate through a
                # sum) in one pass without a temporary; an overflowing sum of finite values
                # falls through to the element-wise check.
                wide = np.float32 if host.dtype == np.float16 else None
                with np.errstate(all="ignore"):
                    total = np.add.reduce(host, axis=None, dtype=wide)
                flags[i] = bool(np.isfinite(total)) or bool(np.isfinite(host).all())
    rest = [i for i, f in enumerate(flags) if f is None]
    if rest:
        finite = mx.stack([mx.all(mx.isfinite(arrays[i])) for i in rest])
        # one flag per array: tolist() of a 1-d array is a list (its stub is the scalar union)
        for i, ok in zip(rest, cast(list[bool], finite.tolist()), strict=True):
            flags[i] = bool(ok)  # host waits
    return [bool(f) for f in flags]


def _non_finite(arrays: dict[str, mx.array]) -> list[str]:
    """The names of the floating-point arrays holding NaN or inf."""
    floats = [(k, v) for k, v in arrays.items() if mx.issubdtype(v.dtype, mx.inexact)]
    flags = finite_flags([v for _, v in floats]) if floats else []
    return [k for (k, _), ok in zip(floats, flags, strict=True) if not ok]


def _loaded(path: str, loaded: dict[str, _Loaded] | None, name: str) -> _Loaded:
    """An array file of a checkpoint: from what :func:`_read_verified` read, or (format 1,
    no manifest) read now, unverified."""
    if loaded is not None:
        if name in loaded:
            return loaded[name]
        raise CheckpointFileMissing(
            f"checkpoint file missing: {os.path.join(path, name)} (not in its manifest)")
    arrays = _read_arrays(os.path.join(path, name))
    return _Loaded(arrays, _non_finite(arrays))


def _check_finite(path: str, file: _Loaded, name: str = "model.safetensors") -> None:
    bad = file.non_finite
    if not bad:
        return
    raise CheckpointError(
        f"checkpoint {path} holds non-finite {_WHAT.get(name, name)} (NaN or inf) in "
        f"{name}: {bad[:5]}; it cannot be resumed from (resume from an older checkpoint)")


def _compare(what: str, path: str, expected: dict, found: dict) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{what} in {path} does not match: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, value in expected.items():
        if value.shape != found[key].shape or value.dtype != found[key].dtype:
            raise CheckpointError(
                f"{what} in {path}: '{key}' is {found[key].dtype}{tuple(found[key].shape)}, "
                f"expected {value.dtype}{tuple(value.shape)}"
            )


def _set_leaf(tree: Any, dotted: str, value: mx.array) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        tree = tree[int(key)] if isinstance(tree, (list, tuple)) else tree[key]
    last = keys[-1]
    if isinstance(tree, list):
        tree[int(last)] = value
    else:
        tree[last] = value


def load_checkpoint(path: str, model: nn.Module, optimizer: optim.Optimizer, *,
                    required: Iterable[str] = (),
                    train_state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint into ``model`` and ``optimizer`` in place; return its meta dict.

    The checkpoint is verified first (:func:`verify_checkpoint`); its ``meta.json`` must hold
    ``format_version``, ``step`` and every key in ``required`` (the trainer passes
    :data:`TRAINER_META_KEYS`), each of the type the trainer writes; every array must be
    finite. The optimizer must be initialised (``optimizer.init(model.trainable_parameters())``)
    so that its state has the checkpoint's structure; values are replaced leaf by leaf, never
    the dict itself, so a step compiled before the load keeps seeing the right arrays. A
    non-empty ``train_state`` is filled the same way from ``train_state.safetensors``.

    Raises:
        FileNotFoundError: the directory or one of its files is missing (the latter is also a
            :class:`CheckpointError`).
        CheckpointError: (a ValueError) a file is corrupt or altered (checksum), a meta field
            is missing or of the wrong type (named), an array (weights, optimizer state,
            trainer state) holds NaN or inf, or names,
            shapes or dtypes differ from the model / optimizer. Nothing is changed in that
            case.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"checkpoint directory not found: {path}")
    meta_path = os.path.join(path, "meta.json")
    loaded = _take_kept(path) or _read_verified(path)  # find_resumable may have read it
    meta = _check_meta(_load_json(meta_path, "meta.json"), meta_path, required)
    weights = _loaded(path, loaded, "model.safetensors").arrays
    opt_state = _loaded(path, loaded, "optimizer.safetensors").arrays
    _compare("model weights", path, dict(tree_flatten(model.parameters())), weights)
    _compare("optimizer state", path, dict(tree_flatten(optimizer.state)), opt_state)
    _check_finite(path, _loaded(path, loaded, "model.safetensors"))
    _check_finite(path, _loaded(path, loaded, "optimizer.safetensors"), "optimizer.safetensors")
    own = {}
    if train_state:
        own = _loaded(path, loaded, TRAIN_STATE).arrays
        _compare("trainer state", path, dict(tree_flatten(train_state)), own)
        _check_finite(path, _loaded(path, loaded, TRAIN_STATE), TRAIN_STATE)
    # Everything checked: now change the model and optimizer.
    model.load_weights(list(weights.items()), strict=True)
    for key, value in opt_state.items():
        _set_leaf(optimizer.state, key, value)
    for key, value in own.items():
        _set_leaf(train_state, key, value)
    return meta
