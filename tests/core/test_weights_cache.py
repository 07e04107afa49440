"""The converted-weights cache: concurrent processes, damaged entries, unusable directories."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
import warnings

import h5py
import numpy as np
import pytest
from helpers import TINY

from napari_sam_keras import load_model
from napari_sam_keras.model import torch_checkpoints
from napari_sam_keras.model import weights_cache as wc
from napari_sam_keras.model.keras_files import save_preset


def same_weights(a, b) -> bool:
    wa, wb = a.model.weights, b.model.weights
    return len(wa) == len(wb) and all(
        np.array_equal(np.asarray(x.numpy()), np.asarray(y.numpy()))
        for x, y in zip(wa, wb, strict=True)
    )


def _no_torch(monkeypatch):
    def fail(path):
        raise AssertionError("the cached conversion should have been used")

    monkeypatch.setattr(
        torch_checkpoints, "read_torch_file", fail
    )  # what every conversion reads with


def _cache_warnings(records):
    return [w for w in records if issubclass(w.category, wc.CacheUnavailableWarning)]


# --------------------------------------------------------------------- concurrency


def test_four_processes_fill_a_fresh_cache(tmp_path, tiny_checkpoint, tiny_network, monkeypatch):
    cache = tmp_path / "fresh-cache"
    files = tmp_path / "files"
    files.mkdir()
    rng = np.random.default_rng(0)
    shared = []
    for i in range(40):
        path = files / f"shared{i}.bin"
        path.write_bytes(rng.bytes(1000 + i))
        shared.append(path)
    go = tmp_path / "go"
    code = textwrap.dedent(
        f"""
        import os, random, sys, time
        from pathlib import Path
        from napari_sam_keras.model.weights_cache import file_sha256

        worker = int(sys.argv[1])
        own = []
        for i in range(15):
            path = Path({str(files)!r}) / f"own{{worker}}-{{i}}.bin"
            path.write_bytes(os.urandom(500 + i))
            own.append(path)
        paths = [Path({str(files)!r}) / f"shared{{i}}.bin" for i in range(40)] + own
        random.Random(worker).shuffle(paths)
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.001)
        for path in paths:
            file_sha256(path)
        from napari_sam_keras import load_model
        net = load_model({str(tiny_checkpoint)!r})
        print("loaded", net.key, flush=True)
        """
    )
    env = dict(os.environ, NAPARI_SAM_KERAS_CACHE_DIR=str(cache), TF_CPP_MIN_LOG_LEVEL="3")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(worker)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for worker in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        results = [proc.communicate(timeout=900) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert f"loaded {tiny_network.key}" in out, out

    # every file hashed by any process has its index entry, with the right hash
    monkeypatch.setenv(wc.CACHE_ENV_VAR, str(cache))
    hashed = sorted(files.iterdir())
    assert len(hashed) == 40 + 4 * 15
    for path in hashed:
        assert wc.cached_file_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest(), path
    # no temporary file left behind, one complete conversion
    leftovers = [p for p in cache.rglob("*") if p.is_file() and ".partial" in p.name]
    assert not leftovers, leftovers
    assert wc.read_converted(wc.file_sha256(tiny_checkpoint)) is not None
    _no_torch(monkeypatch)
    assert same_weights(load_model(tiny_checkpoint), tiny_network)


# --------------------------------------------------------------------- damaged entries


def _damage_data_region(weights_file) -> str:
    """Overwrite bytes inside the largest dataset's data; the HDF5 structure stays valid."""
    with h5py.File(weights_file, "r") as f:
        datasets = []
        f.visititems(
            lambda name, obj: (
                datasets.append((obj.nbytes, name, obj.id.get_offset()))
                if isinstance(obj, h5py.Dataset)
                else None
            )
        )
    nbytes, name, offset = max(d for d in datasets if d[2] is not None)
    assert nbytes >= 64
    with open(weights_file, "r+b") as fh:
        fh.seek(offset + 16)
        fh.write(b"\xff\xff\xc0\x7f" * 8)  # NaNs
    with h5py.File(weights_file, "r") as f:  # still readable: only values changed
        assert f[name].shape
    return name


def test_damaged_cached_weights_are_detected_and_rebuilt(
    tmp_path, tiny_checkpoint, tiny_network, monkeypatch
):
    monkeypatch.setenv(wc.CACHE_ENV_VAR, str(tmp_path / "cache"))
    load_model(tiny_checkpoint)  # converts into the fresh cache
    weights_file, _, _ = wc.read_converted(wc.file_sha256(tiny_checkpoint))
    _damage_data_region(weights_file)

    with pytest.warns(UserWarning, match="is damaged .*converting the checkpoint again"):
        rebuilt = load_model(tiny_checkpoint)
    assert same_weights(rebuilt, tiny_network)

    # the entry was rewritten: the next load reads it, silently and without torch
    _no_torch(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again = load_model(tiny_checkpoint)
    assert same_weights(again, tiny_network)


def test_entry_without_checksum_is_converted_again(tmp_path, tiny_checkpoint, monkeypatch):
    """An entry of the earlier format (a bare config) is not trusted."""
    monkeypatch.setenv(wc.CACHE_ENV_VAR, str(tmp_path / "cache"))
    load_model(tiny_checkpoint)
    digest = wc.file_sha256(tiny_checkpoint)
    _, entry = wc.converted_paths(digest)
    entry.write_text(TINY.to_json())
    assert wc.read_converted(digest) is None
    load_model(tiny_checkpoint)
    assert wc.read_converted(digest) is not None


# --------------------------------------------------------------------- unusable directories


def _file_shaped(tmp_path):
    path = tmp_path / "cache-is-a-file"
    path.write_text("not a folder")
    return path


def _below_a_file(tmp_path):
    return _file_shaped(tmp_path) / "sub"


def _read_only(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    path = tmp_path / "read-only"
    path.mkdir()
    path.chmod(0o555)
    return path


@pytest.mark.parametrize("where", [_file_shaped, _below_a_file, _read_only])
@pytest.mark.parametrize("source", ["preset", "pth"])
def test_unusable_cache_only_costs_caching(
    tmp_path, tiny_checkpoint, tiny_network, monkeypatch, where, source
):
    if source == "preset":
        model_source = save_preset(tiny_network, tmp_path / "preset")
    else:
        model_source = tiny_checkpoint
    cache = where(tmp_path)
    monkeypatch.setenv(wc.CACHE_ENV_VAR, str(cache))
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        net = load_model(model_source)
        again = load_model(model_source)  # still one warning per directory and process
    assert net.config == TINY
    assert same_weights(net, tiny_network) and same_weights(again, tiny_network)
    found = _cache_warnings(records)
    assert len(found) == 1, [str(w.message) for w in records]
    message = str(found[0].message)
    assert str(cache) in message and "NAPARI_SAM_KERAS_CACHE_DIR" in message


def test_a_changed_file_is_hashed_again(tmp_path, monkeypatch):
    monkeypatch.setenv(wc.CACHE_ENV_VAR, str(tmp_path / "cache"))
    path = tmp_path / "data.bin"
    path.write_bytes(b"a" * 100)
    assert wc.file_sha256(path) == hashlib.sha256(b"a" * 100).hexdigest()
    time.sleep(0.01)
    path.write_bytes(b"b" * 100)  # same size, new mtime: a new stamp
    assert wc.file_sha256(path) == hashlib.sha256(b"b" * 100).hexdigest()
