"""A slice's embedding, through the core's one look-up chain.

:func:`slice_source` is the slice's
:class:`~napari_sam_keras.segmentation.embedding_source.EmbeddingSource`: the session's
in-memory embeddings (under :func:`embedding_key`), else the layer's store in the
embeddings folder (:class:`~..session.layer_stores.LayerStores`), else the encoder;
what is computed goes back into both.  :func:`set_slice_embedding` hands it to a
predictor and names the step in the status line.
"""

from __future__ import annotations

from ...segmentation.embedding_source import EmbeddingSource
from ..layers.image_slices import ImageSlice
from .steps import step

#: (tile shape, halo) of a tiled slice, or None.
Tiling = tuple[int, int] | None


def embedding_key(image_slice: ImageSlice, model_key: str) -> tuple:
    """Key of a slice's embedding in the session's memory: the slice's pixels and the model."""
    return (*image_slice.key, model_key)


def slice_source(
    predictor, image_slice: ImageSlice, session, tiling: Tiling = None, memory: bool = True
) -> EmbeddingSource:
    """The slice's embeddings: the session's memory (unless ``memory`` is False), the
    layer's store (untiled slices of a single-scale layer), the predictor's encoder.

    Tiles are kept in memory under keys that hold the tiling
    (:func:`~napari_sam_keras.segmentation.tile_keys.tile_key`): an untiled
    embedding of the slice is never used for a tile.  The layer's store is only looked
    up (and bound, which hashes the layer once) when the slice is not in memory.
    """
    network = predictor.network
    cache = session.embeddings if memory else None
    key = None if cache is None else embedding_key(image_slice, network.key)
    stored = None
    if tiling is None and (key is None or key not in cache):
        stored = session.stores.store_for(image_slice, network)
    store, plane = stored if stored is not None else (None, None)
    tile_shape, halo = tiling if tiling is not None else (None, None)
    return EmbeddingSource(
        predictor.image_encoder,
        image_slice.data,
        tile_shape,
        halo,
        contrast_limits=image_slice.contrast_limits,
        store=store,
        plane=plane,
        memory=cache,
        key=key,
    )


def set_slice_embedding(
    predictor,
    image_slice: ImageSlice,
    session,
    report=None,
    where: str = "",
    tiling: Tiling = None,
    memory: bool = True,
) -> bool:
    """Give ``predictor`` the slice's embedding (tiled: its tiles, embedded when a prompt
    needs them); True if it was not in memory.

    ``where`` starts the step's text (``"slice 2 of 5: "``).
    """
    source = slice_source(predictor, image_slice, session, tiling, memory)
    if tiling is not None:
        tile_shape, halo = tiling
        step(report, f"cutting the image into tiles of {tile_shape} (halo {halo})")
        predictor.set_tiles(source)
        return True
    in_memory = source.memory is not None and source.key in source.memory
    if not in_memory:
        _say_where_from(source, session, report, where)
    predictor.set_embedding(source.embedding(0))
    if not in_memory:
        session.warm.add(predictor.network.key)
    return not in_memory


def _say_where_from(source: EmbeddingSource, session, report, where: str) -> None:
    """Name the step: the embedding is read from the embeddings folder, or computed."""
    if source.store is not None and source.store.is_complete(source.plane, 0):
        step(report, f"{where}reading the image embedding from the embeddings folder")
    else:
        cold = source.encoder.network.key not in session.warm
        first = " (the first one compiles the network)" if cold else ""
        step(report, f"{where}computing the image embedding{first}")
