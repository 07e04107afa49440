"""micro-sam's precomputed embeddings <-> our :class:`~napari_sam_keras.EmbeddingStore`.

micro-sam (``micro_sam.util.precompute_image_embeddings``) keeps the embeddings
of one image or stack in a zarr group with these root attributes:
``data_signature`` (SHA-1 of the raw bytes of the input array), ``tile_shape``,
``halo``, ``model_type`` (and, in newer versions, ``model_name``,
``micro_sam_version``, ``model_hash``), ``input_size`` and ``original_size``.
Its array ``features`` is channels first:

* 2D, untiled: ``features`` (1, C, h, w);
* 3D (a stack), untiled: ``features`` (Z, 1, C, h, w);
* tiled: a group ``features/`` with one array per tile, ``"0"``, ``"1"``, ...
  (the tiles of a row-major grid of ``tile_shape`` blocks, each with ``halo``
  pixels of its neighbours, clipped at the image edge: our
  :class:`~napari_sam_keras.segmentation.tiling.TileGrid`), (1, C, h, w) in 2D,
  (Z, 1, C, h, w) in 3D, each with its own ``original_size``/``input_size``.

Ours is channels last with a checksum per entry.  The tensor is the same: a
transpose and the sizes are all it takes.  Both map an image that is not 8-bit
to 0..255 by its min..max (so ours must have no contrast limits); micro-sam
truncates, per tile, where we round, per plane, so the same image embedded on
each side differs by under 1 % (docs/large-images-and-store.md).

:func:`import_micro_sam_embeddings` reads a micro-sam store (opened read-only:
a foreign store is never written) after checking its data signature against
the image and its model and embedding shape against the network, and writes
a new store of ours.  :func:`export_micro_sam_embeddings` writes a new
micro-sam store (zarr format 2, which every zarr version reads) from one of
ours, into a temporary folder renamed when complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EmbeddingStoreError, EmbeddingStoreMismatch, ImageError
from ..files.atomic_write import atomic_directory
from ..model.as_network import as_network
from ..model.config import ARCHITECTURES, SAMConfig
from ..model.embedding import ImageEmbedding
from ..model.embedding_store import EmbeddingStore, image_signature
from .precompute import is_stack
from .store_binding import bind_planes
from .tiling import TileGrid, plane_of

#: The root attribute that marks a micro-sam embedding store.
SIGNATURE_ATTR = "data_signature"


def micro_sam_data_signature(data: Any) -> str:
    """micro-sam's ``data_signature``: the SHA-1 of the input array's raw bytes."""
    return hashlib.sha1(np.ascontiguousarray(np.asarray(data)).tobytes()).hexdigest()


def model_label(name: str) -> str:
    """What a model is called in a micro-sam store: its file or preset name without
    folder and suffix (``.../vit_b_lm.pt`` -> ``vit_b_lm``)."""
    name = str(name or "").replace("\\", "/").rstrip("/")
    stem = name.rsplit("/", 1)[-1]
    for suffix in (".pt", ".pth", ".keras", ".weights.h5"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def micro_sam_model_type(name: str, config: dict | SAMConfig) -> str:
    """micro-sam's ``model_type`` of a model: its architecture, ``vit_t`` .. ``vit_h``.

    micro-sam stores the architecture as ``model_type`` and the checkpoint's name as
    ``model_name`` (``vit_b`` and ``vit_b_lm``), and refuses to reuse a store whose
    ``model_type`` differs from its predictor's.  The architecture is read from the
    config; a model of no official architecture (a test's tiny SAM) keeps its name.
    """
    if not isinstance(config, SAMConfig):
        config = SAMConfig.from_dict(dict(config))
    for architecture, official in ARCHITECTURES.items():
        if config == official:
            return architecture
    return model_label(name)


def _pair(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def open_micro_sam_store(path: str | os.PathLike) -> Any:
    """The zarr group of a micro-sam embedding store, opened read-only.

    Raises:
        EmbeddingStoreError: ``path`` is no zarr group, or not one micro-sam wrote.
    """
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise EmbeddingStoreError(f"There is no micro-sam embedding store at {path}.")
    try:
        group = zarr.open_group(store=str(path), mode="r")
        attrs = dict(group.attrs)
        has_features = "features" in group
    except Exception as err:
        raise EmbeddingStoreError(f"{path} is not a zarr group ({err}).") from err
    if SIGNATURE_ATTR not in attrs or not has_features:
        raise EmbeddingStoreError(
            f"{path} is not a micro-sam embedding store (no {SIGNATURE_ATTR!r} attribute "
            "and 'features')."
        )
    return group


def _tile_arrays(group: Any) -> list[tuple[Any, dict]]:
    """[(array, its size attributes)] per tile: one entry for an untiled store."""
    features = group["features"]
    if hasattr(features, "shape"):  # an array: untiled
        return [(features, dict(group.attrs))]
    names = sorted((k for k in features.array_keys()), key=int)
    if [int(n) for n in names] != list(range(len(names))):
        raise EmbeddingStoreError(f"The tiles of {group.store} are not numbered 0..{len(names)}.")
    return [(features[n], dict(features[n].attrs)) for n in names]


def import_micro_sam_embeddings(
    source: str | os.PathLike,
    data: Any,
    model: Any,
    store: EmbeddingStore | str | os.PathLike,
    *,
    trust_model: bool = False,
) -> EmbeddingStore:
    """Copy micro-sam's embeddings of ``data`` into a new store of ours.

    Args:
        source: the micro-sam embedding zarr (only read).
        data: the image (H, W[, C]) or stack (Z, H, W[, C]) it was computed from,
            exactly as micro-sam was given it (its ``data_signature`` is checked).
        model: the network that will use the embeddings; it must be the model
            micro-sam used (same embedding shape, and its name, e.g. ``vit_b_lm``,
            must be the store's ``model_name`` (or, in stores of older micro-sam versions,
            ``model_type``) unless ``trust_model``).
        store: our store to create (a missing or empty folder) or its path.
        trust_model: accept a model whose name differs from the store's (the same
            weights under another file name).

    Raises:
        EmbeddingStoreError: ``source`` is not a micro-sam store.
        EmbeddingStoreMismatch: other data, another model or another embedding shape;
            nothing is created then.
    """
    network = as_network(model)
    group = open_micro_sam_store(source)
    attrs = dict(group.attrs)
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    if attrs[SIGNATURE_ATTR] != micro_sam_data_signature(data):
        raise EmbeddingStoreMismatch(
            f"The micro-sam embeddings in {source} were computed for other data (its "
            f"data_signature differs from the image's {data.shape} {data.dtype}): give the "
            "image exactly as micro-sam was given it."
        )
    # model_name is the checkpoint (vit_b_lm); model_type, its architecture (vit_b), was
    # the only name before micro-sam 1.x wrote model_name
    theirs = str(attrs.get("model_name") or attrs.get("model_type") or "")
    mine = model_label(network.name)
    if not trust_model and theirs and mine != theirs:
        raise EmbeddingStoreMismatch(
            f"The micro-sam embeddings in {source} were computed by {theirs!r}, "
            f"this model is {mine!r}: load that model, or, if it is the same weights under "
            "another name, trust it (trust_model=True, --trust-model)."
        )
    tiles = _tile_arrays(group)
    stack = tiles[0][0].ndim == 5
    if stack != (data.ndim >= 3 and is_stack(data)):
        raise ImageError(
            f"The micro-sam store {source} holds a {'stack' if stack else '2D image'}, the "
            f"image given is {'not ' if stack else ''}a stack ({data.shape})."
        )
    cfg = network.config
    e = cfg.embedding_size
    want = (cfg.prompt_embed_dim, e, e)
    for array, _ in tiles:
        if tuple(array.shape[-3:]) != want:
            raise EmbeddingStoreMismatch(
                f"The micro-sam embeddings in {source} have shape (C, h, w) = "
                f"{tuple(array.shape[-3:])}; this model makes {want}: another model."
            )
    planes = [plane_of(data, z) for z in range(data.shape[0])] if stack else [data]
    tile_shape, halo = _pair(attrs.get("tile_shape")), _pair(attrs.get("halo"))
    if tile_shape is None and len(tiles) > 1:
        raise EmbeddingStoreError(f"{source} has several tiles but no tile_shape attribute.")
    shape = tuple(int(v) for v in planes[0].shape[:2])
    grid = TileGrid(shape, tile_shape or shape, halo)
    if len(grid) != len(tiles):
        raise EmbeddingStoreMismatch(
            f"{source} holds {len(tiles)} tiles; this image cut into {tile_shape} tiles "
            f"with halo {halo} has {len(grid)}."
        )
    ours = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store)
    ours.lock_for_writing()
    bind_planes(ours, network, planes, stack, None, "RGB", tile_shape, halo)
    for index, (array, sizes) in enumerate(tiles):
        original, inp = _pair(sizes.get("original_size")), _pair(sizes.get("input_size"))
        if original is None or inp is None:
            raise EmbeddingStoreError(f"{source}: tile {index} has no original/input size.")
        for z in range(len(planes)):
            features = np.asarray(array[z] if stack else array[...], np.float32)
            ours.write(
                z,
                index,
                ImageEmbedding(
                    features=np.ascontiguousarray(features.transpose(0, 2, 3, 1)),
                    original_size=original,
                    input_size=inp,
                    model_key=network.key,
                ),
            )
    return ours


def export_micro_sam_embeddings(
    store: EmbeddingStore | str | os.PathLike,
    data: Any,
    out: str | os.PathLike,
    *,
    model_type: str | None = None,
    model_hash: str | None = None,
) -> Path:
    """Write a new micro-sam embedding store ``out`` from our (complete) store of ``data``.

    Args:
        store: our store (or its path), made without contrast limits (micro-sam maps
            every plane by its own min..max, as ours does then).
        data: the image or stack the store was made for (checked by its signature);
            micro-sam's ``data_signature`` is computed from it.
        out: the folder to create (must not exist).
        model_type: micro-sam's ``model_type``, the architecture (default: read from the
            store's model config, :func:`micro_sam_model_type`, e.g. ``vit_b``); its
            ``model_name`` is the store's model name without suffix (``vit_b_lm``).
        model_hash: micro-sam's ``model_hash`` of the checkpoint, if known (newer
            micro-sam versions compare it when they reuse a store).

    Raises:
        EmbeddingStoreMismatch: the store was made for other data or with contrast limits.
        EmbeddingStoreError: an entry is missing (compute it first).
    """
    import zarr

    ours = store if isinstance(store, EmbeddingStore) else EmbeddingStore(store, read_only=True)
    spec = ours.spec
    if spec is None:
        raise EmbeddingStoreError(f"The embedding store {ours.path} holds nothing yet.")
    if not hasattr(data, "shape") or not hasattr(data, "dtype"):
        data = np.asarray(data)
    planes = [plane_of(data, z) for z in range(data.shape[0])] if spec.stack else [data]
    if tuple(image_signature(p) for p in planes) != spec.plane_signatures:
        raise EmbeddingStoreMismatch(
            f"The embedding store {ours.path} was made for other data than this image."
        )
    if spec.contrast_limits is not None or spec.image_format != "RGB":
        raise EmbeddingStoreMismatch(
            f"The embedding store {ours.path} was made with contrast limits "
            f"{spec.contrast_limits} ({spec.image_format}); micro-sam maps each plane by its "
            "own min..max: embed without --contrast-limits to export."
        )
    shape = tuple(int(s) for s in spec.plane_shape[:2])
    grid = TileGrid(shape, spec.tile_shape or shape, spec.halo)
    out = Path(out)
    if out.exists():
        raise EmbeddingStoreError(f"{out} exists: choose a new folder for the micro-sam store.")
    attrs: dict[str, Any] = {
        SIGNATURE_ATTR: micro_sam_data_signature(data),
        "tile_shape": None if spec.tile_shape is None else list(spec.tile_shape),
        "halo": None if spec.tile_shape is None else list(spec.halo),
        "model_type": model_type or micro_sam_model_type(spec.model_name, spec.model_config),
        "model_name": model_label(spec.model_name),
    }
    if model_hash:
        attrs["model_hash"] = model_hash

    def entry(z: int, tile: int) -> ImageEmbedding:
        emb = ours.read(z, tile)
        if emb is None:
            raise EmbeddingStoreError(
                f"The embedding store {ours.path} lacks plane {z}, tile {tile}: compute it "
                "first (napari-sam-keras embed)."
            )
        return emb

    def channels_first(emb: ImageEmbedding) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(emb.features, np.float32).transpose(0, 3, 1, 2))

    with atomic_directory(out) as tmp:
        group = zarr.open_group(store=str(tmp), mode="w-", zarr_format=2)
        n = len(planes)
        if spec.tile_shape is None:
            first = entry(0, 0)
            c_shape = channels_first(first).shape
            array = group.create_array(
                "features",
                shape=(n, *c_shape) if spec.stack else c_shape,
                chunks=(1, *c_shape) if spec.stack else c_shape,
                dtype="float32",
            )
            for z in range(n):
                emb = first if z == 0 else entry(z, 0)
                if spec.stack:
                    array[z] = channels_first(emb)
                else:
                    array[...] = channels_first(emb)
            attrs["original_size"] = list(first.original_size)
            attrs["input_size"] = list(first.input_size)
        else:
            tiles = group.create_group("features")
            tiles.attrs.update(
                {"shape": list(shape), "tile_shape": list(spec.tile_shape), "halo": list(spec.halo)}
            )
            for tile in range(len(grid)):
                first = entry(0, tile)
                c_shape = channels_first(first).shape
                array = tiles.create_array(
                    str(tile),
                    shape=(n, *c_shape) if spec.stack else c_shape,
                    chunks=(1, *c_shape) if spec.stack else c_shape,
                    dtype="float32",
                )
                for z in range(n):
                    emb = first if z == 0 else entry(z, tile)
                    if spec.stack:
                        array[z] = channels_first(emb)
                    else:
                        array[...] = channels_first(emb)
                array.attrs.update(
                    {
                        "original_size": list(first.original_size),
                        "input_size": list(first.input_size),
                    }
                )
            attrs["original_size"] = attrs["input_size"] = None
        group.attrs.update(attrs)
    return out
