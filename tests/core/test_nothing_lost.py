"""Nothing lost, round 3 (issue 23): stores that never delete a user's files, unique batch
outputs, guards against hostile files, sizes under the checksum, one writer per store, the
degenerate-prompt rule.  Each test is one finding of the hostile-user probe.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from helpers import repo_env, write_cell_images

from napari_sam_keras import SAMPredictor
from napari_sam_keras.errors import CorruptEmbeddingError, PromptError, SAMError
from napari_sam_keras.files.batch_files import check_unique_outputs, output_names
from napari_sam_keras.files.resource_limits import (
    TooManyPixelsError,
    check_pixel_limit,
    header_shape,
)
from napari_sam_keras.files.store_lock import StoreLockedError, lock_path
from napari_sam_keras.files.store_safety import StoreFolderNotEmpty
from napari_sam_keras.model.embedding_store import EmbeddingStore, EmbeddingStoreWarning
from napari_sam_keras.segmentation.batch import segment_batch
from napari_sam_keras.segmentation.precompute import precompute_embeddings
from napari_sam_keras.segmentation.volume import segment_volume

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "napari_sam_keras"
OPTIONS = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def _image(seed: int = 0, shape=(96, 120)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4096, shape).astype(np.uint16)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
        for p in sorted(folder.rglob("*"))
    }


# ---------------------------------------------------------- 1. a store never deletes files


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_store_is_never_created_in_a_folder_holding_files(tiny_network, tmp_path, zarr_format):
    """An empty zarr group next to a user's files: refused, nothing deleted or written."""
    folder = tmp_path / "lab"
    zarr.open_group(str(folder), mode="w", zarr_format=zarr_format)  # the user's empty group
    (folder / "notes.txt").write_text("three weeks of annotations")
    (folder / "raw").mkdir()
    (folder / "raw" / "cell.tif").write_bytes(b"pixels")
    before = _snapshot(folder)

    with pytest.raises(StoreFolderNotEmpty, match="not empty.*nothing was changed"):
        EmbeddingStore(folder)  # refused when opened, before any work
    with pytest.raises(StoreFolderNotEmpty):
        precompute_embeddings(tiny_network, _image(), folder)
    with pytest.raises(StoreFolderNotEmpty):
        SAMPredictor(tiny_network, embeddings=folder).set_image(_image())
    assert _snapshot(folder) == before
    assert not lock_path(folder).exists() or lock_path(folder).stat().st_size == 0


def test_a_store_is_created_in_a_missing_empty_or_empty_group_folder(tiny_network, tmp_path):
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    group = tmp_path / "group.zarr"
    zarr.open_group(str(group), mode="w")  # nothing but the group's own metadata
    for path in (tmp_path / "missing.zarr", empty, group):
        counts = precompute_embeddings(tiny_network, _image(), path)
        assert counts["computed"] == 1
        assert EmbeddingStore(path).read(0, 0) is not None


def _calls_with_mode_w(source: str) -> list[int]:
    """Lines of calls other than the builtin ``open`` given ``mode="w"`` (zarr's mode that
    deletes the folder it opens), unless the line says it opens a fresh temporary folder."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id == "open":
            continue  # a file opened for text, not a folder
        for keyword in node.keywords:
            if keyword.arg == "mode" and isinstance(keyword.value, ast.Constant):
                if keyword.value.value == "w":
                    line = lines[node.lineno - 1]
                    if "a fresh temporary folder" not in line:
                        found.append(node.lineno)
    return found


def test_no_zarr_mode_w_in_the_package():
    """No code path of the package opens a directory with a mode that deletes it."""
    hits = [
        f"{path.relative_to(REPO)}:{number}"
        for path in PACKAGE.rglob("*.py")
        for number in _calls_with_mode_w(path.read_text(encoding="utf-8"))
    ]
    assert hits == []
    # the check finds what it looks for
    assert _calls_with_mode_w('zarr.open_group(store=p, mode="w")\nopen(p, mode="w")') == [1]


# ---------------------------------------------------------- 2. unique batch outputs


def test_batch_outputs_are_unique_by_construction(tmp_path):
    a = tmp_path / "coll" / "plate1" / "A01" / "img.tif"
    b = tmp_path / "coll" / "plate1__A01" / "img.tif"
    c = tmp_path / "coll" / "Plate1" / "a01" / "img.tif"  # differs from a only in case
    names = output_names([a, b, c], "tiff")
    assert len({n.casefold() for n in names}) == 3, names
    assert names == output_names([a, b, c], "tiff")  # a re-run finds the same outputs
    assert output_names([a, tmp_path / "other.tif"], "tiff") == [
        "img-labels.tif",
        "other-labels.tif",
    ]  # names that do not collide are left as they were

    with pytest.raises(SAMError, match="same output"):
        check_unique_outputs([tmp_path / "x-labels.tif", tmp_path / "X-labels.tif"])


def test_two_inputs_that_named_one_output_are_both_kept(tiny_network, tmp_path):
    (first,) = write_cell_images(tmp_path / "coll" / "plate1" / "A01", 1)
    (second,) = write_cell_images(tmp_path / "coll" / "plate1__A01", 1)
    first.rename(first.with_name("img.tif"))
    second.rename(second.with_name("img.tif"))
    out = tmp_path / "out"
    inputs = [tmp_path / "coll" / "plate1" / "A01", tmp_path / "coll" / "plate1__A01"]
    summary = segment_batch(inputs, out, model=tiny_network, **OPTIONS)
    assert summary.count("done") == 2
    outputs = {row["output"] for row in summary.rows}
    assert len(outputs) == 2 and all(Path(o).is_file() for o in outputs)
    again = segment_batch(inputs, out, model=tiny_network, **OPTIONS)
    assert again.count("skipped") == 2


# ---------------------------------------------------------- 3. resource guards


def _bomb(path: Path, side: int = 40000) -> Path:
    """A 16 x 16 TIFF whose header claims side x side pixels (a decompression bomb's header)."""
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(side)
        tif.pages[0].tags["ImageLength"].overwrite(side)
    return path


def test_the_pixel_limit_is_read_from_the_header_before_any_pixel(tmp_path, monkeypatch):
    bomb = _bomb(tmp_path / "bomb.tif")
    assert bomb.stat().st_size < 10_000 and header_shape(bomb) == (40000, 40000)
    tracemalloc.start()
    with pytest.raises(TooManyPixelsError, match="--tile-shape.*--max-pixels 1600000000"):
        check_pixel_limit(bomb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing near the 1.6 GB the header claims was made

    check_pixel_limit(bomb, 40000 * 40000)  # raised on request
    monkeypatch.setenv("NAPARI_SAM_KERAS_MAX_PIXELS", "100")
    np.save(tmp_path / "a.npy", np.zeros((20, 20), np.uint8))
    with pytest.raises(TooManyPixelsError, match="400"):
        check_pixel_limit(tmp_path / "a.npy")


def test_in_batch_a_refused_file_is_a_failed_row_and_the_others_are_done(tiny_network, tmp_path):
    folder = tmp_path / "plate"
    write_cell_images(folder, 1)
    _bomb(folder / "bomb.tif")
    summary = segment_batch(folder, tmp_path / "out", model=tiny_network, **OPTIONS)
    rows = {Path(r["input"]).name: r for r in summary.rows}
    assert rows["bomb.tif"]["status"] == "failed"
    assert "--max-pixels" in rows["bomb.tif"]["message"]
    assert [r["status"] for name, r in rows.items() if name != "bomb.tif"] == ["done"]


# ---------------------------------------------------------- 4. sizes under the checksum


def _entry_attrs(store: Path, plane: int = 0, tile: int = 0) -> Path:
    return store / f"p{plane:05d}" / f"t{tile:05d}" / "zarr.json"


def _edit_sizes(store: Path, original, input_size=None) -> None:
    import json

    meta_path = _entry_attrs(store)
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["original_size"] = list(original)
    if input_size is not None:
        meta["attributes"]["input_size"] = list(input_size)
    meta_path.write_text(json.dumps(meta))


def test_an_edited_size_is_caught_by_the_checksum_and_by_the_image(tiny_network, tmp_path):
    image = _image()
    store = tmp_path / "s.zarr"
    precompute_embeddings(tiny_network, image, store)
    good = EmbeddingStore(store).read(0, 0)

    _edit_sizes(store, (60000, 60000))
    with pytest.raises(CorruptEmbeddingError):
        EmbeddingStore(store).read(0, 0)

    # A consistent edit (a plausible size, its input size, the checksum remade) is still
    # compared with the image it is used for.
    from napari_sam_keras.model.embedding_store import entry_checksum
    from napari_sam_keras.processing.images import preprocess_shape

    size = (48, 60)
    _edit_sizes(store, size, preprocess_shape(*size, tiny_network.config.image_size))
    meta_path = _entry_attrs(store)
    import json

    meta = json.loads(meta_path.read_text())
    meta["attributes"]["checksum"] = entry_checksum(
        good.features, size, preprocess_shape(*size, tiny_network.config.image_size)
    )
    meta_path.write_text(json.dumps(meta))
    assert EmbeddingStore(store).read(0, 0).original_size == size  # self-consistent alone
    with pytest.raises(CorruptEmbeddingError, match="the image here is"):
        EmbeddingStore(store).read(0, 0, image.shape)

    predictor = SAMPredictor(tiny_network, embeddings=store)
    with pytest.warns(EmbeddingStoreWarning, match="computed again"):
        predictor.set_image(image)
    masks, _, _ = predictor.predict(point_coords=[[50, 40]], point_labels=[1])
    assert masks.shape[1:] == image.shape


# ---------------------------------------------------------- 5. one writer per store

_HOLDER = textwrap.dedent(
    """
    import sys
    from napari_sam_keras.model.embedding_store import EmbeddingStore
    store = EmbeddingStore(sys.argv[1])
    store.lock_for_writing()
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes our stdin
    """
)


def _holder(store: Path) -> subprocess.Popen:
    env = repo_env()
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(store)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "locked", child.stderr.read()
    return child


def test_a_second_writer_is_refused_with_a_clear_message(tiny_network, tmp_path):
    image = _image()
    store = tmp_path / "s.zarr"
    precompute_embeddings(tiny_network, _image(1), tmp_path / "other.zarr")  # compiled once
    holder = _holder(store)
    try:
        with pytest.raises(StoreLockedError, match="Another process is writing the store"):
            precompute_embeddings(tiny_network, image, store)
        assert not store.exists() or not any(store.iterdir())
        # a reader that computes what is missing still works; it only does not store it
        predictor = SAMPredictor(tiny_network, embeddings=store)
        with pytest.warns(EmbeddingStoreWarning, match="not stored"):
            predictor.set_image(image)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # the lock went with the process (never stale): the store is written now
    assert precompute_embeddings(tiny_network, image, store)["computed"] == 1


def test_a_killed_writer_leaves_no_stale_lock(tiny_network, tmp_path):
    store = tmp_path / "s.zarr"
    holder = _holder(store)
    holder.kill()
    holder.wait(timeout=60)
    holder.stdin.close()
    assert precompute_embeddings(tiny_network, _image(), store)["computed"] == 1


# ---------------------------------------------------------- 6. one degenerate-prompt rule


@pytest.mark.parametrize("box", [[10, 10, 10, 40], [10, 30, 60, 30], [5, 5, 5, 5]])
def test_a_box_without_area_is_refused_by_every_entry_point(tiny_network, box):
    image = _image()
    predictor = SAMPredictor(tiny_network)
    predictor.set_image(image)
    with pytest.raises(PromptError, match="has no area"):
        predictor.predict(box=box)
    with pytest.raises(PromptError, match="has no area"):
        predictor.predict_batch(boxes=[box])
    stack = np.stack([image, image])
    with pytest.raises(PromptError, match="has no area"):
        segment_volume(tiny_network, stack, {0: {"box": box}})
    from napari_sam_keras.segmentation.tracking import track_object

    with pytest.raises(PromptError, match="has no area"):
        track_object(tiny_network, stack, {0: {"box": box}})


def test_a_one_pixel_wide_mask_still_prompts_the_next_slice():
    """Boxes made from masks follow the rule too (a one-pixel-wide mask gives a box with area)."""
    from napari_sam_keras.processing.mask_prompts import mask_box
    from napari_sam_keras.processing.prompt_rules import check_box_area

    mask = np.zeros((20, 30), bool)
    mask[3:9, 0] = True  # one column wide, on the image's edge
    box = mask_box(mask)
    check_box_area(box)
    assert box[0] == 0 and box[2] == 1 and (box[1], box[3]) == (3, 8)


@pytest.mark.parametrize(
    "setting",
    [
        {"center_distance_threshold": -0.1},
        {"boundary_distance_threshold": -1},
        {"foreground_threshold": float("nan")},
        {"min_size": -5},
        {"min_size": 2.5},
    ],
)
def test_negative_thresholds_and_sizes_of_the_instance_segmenter_are_refused(setting):
    from napari_sam_keras.processing.prompt_rules import check_watershed_settings

    name = next(iter(setting))
    with pytest.raises(SAMError, match=name):
        check_watershed_settings(setting)
