"""ArrayBatches: batches gathered on the device or on the host, against a plain NumPy reference."""

from __future__ import annotations

import mlx.core as mx
import mlx.optimizers as optim
import numpy as np
import pytest
from helpers_trainer import linear_model, mse, regression_data

import trainers.data
from trainers import ArrayBatches, Trainer
from trainers.data import BatchStream, as_source


def reference_batches(arrays, batch_size, *, epoch, seed, shuffle, drop_last):
    """Epoch ``epoch``'s batches, written plainly: the Generator's permutation cut in chunks."""
    n = len(arrays[0])
    if shuffle:
        order = np.random.default_rng((seed, epoch)).permutation(n)
    else:
        order = np.arange(n)
    stop = n - n % batch_size if drop_last else n
    return [tuple(a[order[i:i + batch_size]] for a in arrays)
            for i in range(0, stop, batch_size)]


def sample_arrays(n=23):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = rng.integers(0, 5, n).astype(np.int32)
    return x, y


@pytest.mark.parametrize("device", [True, False])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("as_dict", [True, False])
def test_batches_match_the_numpy_reference(device, shuffle, drop_last, as_dict):
    x, y = sample_arrays(23)
    data = ArrayBatches({"x": x, "y": y} if as_dict else (x, y), 5, seed=4, shuffle=shuffle,
                        drop_last=drop_last, device=device)
    assert data.device is device
    for epoch in (0, 1, 7):
        expected = reference_batches((x, y), 5, epoch=epoch, seed=4, shuffle=shuffle,
                                     drop_last=drop_last)
        got = list(data.epoch(epoch))
        assert len(got) == len(expected) == len(data) == (4 if drop_last else 5)
        for batch, (ex, ey) in zip(got, expected, strict=True):
            bx, by = (batch["x"], batch["y"]) if as_dict else batch
            assert isinstance(bx, mx.array if device else np.ndarray)
            np.testing.assert_array_equal(np.array(bx), ex)
            np.testing.assert_array_equal(np.array(by), ey)
    if shuffle:  # two epochs give different orders
        first = [np.array(b["y"] if as_dict else b[1]) for b in data.epoch(0)]
        second = [np.array(b["y"] if as_dict else b[1]) for b in data.epoch(1)]
        assert not all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("device", [True, False])
def test_short_last_batch_is_kept_or_dropped(device):
    x = np.arange(10, dtype=np.float32)
    kept = ArrayBatches((x,), 4, shuffle=False, drop_last=False, device=device)
    assert [np.array(b[0]).tolist() for b in kept.epoch(0)] == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    dropped = ArrayBatches((x,), 4, shuffle=False, device=device)
    assert len(dropped) == 2
    assert [np.array(b[0]).tolist() for b in dropped.epoch(0)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    shuffled = ArrayBatches((x,), 4, seed=2, drop_last=False, device=device)
    order = np.random.default_rng((2, 3)).permutation(10)
    assert [np.array(b[0]).tolist() for b in shuffled.epoch(3)] == [
        order[:4].tolist(), order[4:8].tolist(), order[8:].tolist()]


@pytest.mark.parametrize("device", [True, False])
def test_shuffled_epochs_are_reproducible_permutations(device):
    x = np.arange(20, dtype=np.float32)
    data = ArrayBatches((x,), 5, seed=7, device=device)
    e0 = np.concatenate([np.array(b[0]) for b in data.epoch(0)])
    e1 = np.concatenate([np.array(b[0]) for b in data.epoch(1)])
    np.testing.assert_array_equal(np.sort(e0), x)
    np.testing.assert_array_equal(e0, np.random.default_rng((7, 0)).permutation(20))
    assert not np.array_equal(e0, e1)
    np.testing.assert_array_equal(e0, np.concatenate([np.array(b[0]) for b in data.epoch(0)]))


@pytest.mark.parametrize("device", [True, False])
def test_resume_mid_epoch_starts_at_the_saved_batch(device):
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    data = ArrayBatches((x,), 4, seed=5, device=device)
    reference = reference_batches((x,), 4, epoch=1, seed=5, shuffle=True, drop_last=True)
    stream = BatchStream(as_source(data), epoch=1, index=3)
    assert (stream.epoch, stream.index) == (1, 3)
    rest = [np.array(stream.next()[0]) for _ in range(2)]
    np.testing.assert_array_equal(rest[0], reference[3][0])
    np.testing.assert_array_equal(rest[1], reference[4][0])
    assert (stream.epoch, stream.index) == (1, 5)
    # the next batch opens epoch 2 in its own shuffled order
    epoch2 = reference_batches((x,), 4, epoch=2, seed=5, shuffle=True, drop_last=True)
    np.testing.assert_array_equal(np.array(stream.next()[0]), epoch2[0][0])
    assert (stream.epoch, stream.index) == (2, 1)
    # epoch(e, start) itself begins at batch `start`
    np.testing.assert_array_equal(np.array(next(data.epoch(1, start=4))[0]), reference[4][0])


def test_device_batches_convert_like_to_device():
    x64 = np.linspace(0, 1, 12).reshape(6, 2)  # float64: MLX keeps float32, as mx.array does
    labels = np.arange(6, dtype=np.int64)
    batch = next(ArrayBatches({"x": x64, "y": labels}, 3, shuffle=False).epoch(0))
    assert batch["x"].dtype == mx.float32 and batch["y"].dtype == mx.int64
    np.testing.assert_allclose(np.array(batch["x"]), x64[:3], rtol=1e-7)


def test_default_placement():
    x, y = sample_arrays(8)
    assert ArrayBatches((x, y), 4).device is True
    assert ArrayBatches((mx.array(x), mx.array(y)), 4).device is True
    names = np.array(["a", "b", "c", "d"])
    assert ArrayBatches((names,), 2).device is False  # MLX has no string arrays
    assert [b[0].tolist() for b in ArrayBatches((names,), 2, shuffle=False).epoch(0)] == [
        ["a", "b"], ["c", "d"]]


def test_memory_mapped_and_large_arrays_stay_on_the_host(tmp_path, monkeypatch):
    x, _ = sample_arrays(8)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mapped = np.load(path, mmap_mode="r")
    assert ArrayBatches((mapped,), 4).device is False
    monkeypatch.setattr(trainers.data, "DEVICE_BYTES", x.nbytes - 1)
    assert ArrayBatches((x,), 4).device is False
    assert ArrayBatches((x,), 4, device=True).device is True  # asked for: honoured


def test_npz_path_is_loaded_and_kept_on_the_device(tmp_path):
    x, y = sample_arrays(8)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    data = ArrayBatches(path, 4, shuffle=False)
    assert data.device is True
    batch = next(data.epoch(0))
    np.testing.assert_array_equal(np.array(batch["x"]), x[:4])


def test_bad_device_arguments():
    with pytest.raises(ValueError, match=r"device must be True, False or None.*'yes'"):
        ArrayBatches((np.zeros(4),), 2, device="yes")
    with pytest.raises(ValueError, match=r"device=True.*cannot convert.*device=False"):
        ArrayBatches((np.array(["a", "b"]),), 1, device=True)
    dx = pytest.importorskip("mlx.data")
    buffer = dx.buffer_from_vector([{"x": np.zeros(2, np.float32)} for _ in range(4)])
    with pytest.raises(ValueError, match="device=True needs a dict or tuple of arrays"):
        ArrayBatches(buffer, 2, device=True)
    assert ArrayBatches(buffer, 2).device is False


def test_missing_dataset_file():
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        ArrayBatches("/nonexistent/nope.npz", 4)


def test_trainer_gives_the_same_weights_with_device_and_host_batches(tmp_path):
    # The gathered rows are the same floats, so the updates must agree bit for bit.
    x, y = regression_data(48, 4, 2)
    weights = {}
    for device in (True, False):
        model = linear_model(4, 2, seed=3)
        Trainer(model, mse, optim.SGD(learning_rate=0.05, momentum=0.9),
                ArrayBatches((x, y), 8, seed=9, device=device), run_dir=None, log=False,
                checkpoint_every=0, report_every=0, max_steps=15).fit()
        weights[device] = np.array(model.weight)
    np.testing.assert_array_equal(weights[True], weights[False])
