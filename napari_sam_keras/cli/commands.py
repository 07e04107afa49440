"""What each ``napari-sam-keras`` subcommand does (``cmd_<name>(args) -> exit status``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import ImageError, SAMError
from ..files.atomic_write import check_output
from ..files.axis_readers import open_planes
from ..files.image_files import check_label_output, read_image, write_array
from ..files.resource_limits import check_block_limit, check_shape_limit
from ..model.model_source import resolve_model
from ..napari_adapter import INTERACTIVE_WIDGET, PLUGIN_NAME
from ..processing.prompt_rules import check_size, check_threshold
from ..processing.prompts import check_boxes, check_points
from ..runtime.backend import import_ml_stack
from .label_output import write_label_output
from .prompt_args import objects_from_command_line

#: The label image written into an input OME-Zarr's ``labels/`` group without ``--out``.
OME_ZARR_LABELS_NAME = "napari-sam-keras"


def _default_out(args, selection) -> Path:
    """``--out`` (or IMAGE-labels.tif; for an OME-Zarr input its ``labels/napari-sam-keras``),
    checked before the slow work: never the input, never an existing output unless
    ``--overwrite``."""
    if args.out is not None:
        out = args.out
    elif selection.source.ome_zarr_image is not None:
        out = selection.source.ome_zarr_image / "labels" / OME_ZARR_LABELS_NAME
    else:
        out = args.image.with_name(args.image.stem + "-labels.tif")
    return check_label_output(out, inputs=[args.image], overwrite=args.overwrite)


def _select_plane(args):
    """The plane to segment, chosen by axis name (``--channel``, ``--z``, ``--t``), with its
    pixel sizes: checked before the model loads, read only when needed."""
    return open_planes(args.image, args.channel, args.plane, args.t)


def _load_image(args, selection=None):
    """The plane to segment; read lazily (tile by tile) when tiles or a store are used.

    A plane read whole is first checked against the pixel limit (``--max-pixels``), from
    the shape the file declares, before any pixel is decoded; a lazily read one against the
    size of its storage blocks."""
    selection = selection or _select_plane(args)
    limit = getattr(args, "max_pixels", None)
    if _tiled_or_stored(args):
        if getattr(args, "tile_shape", None) is None:  # a store: the plane is still read whole
            check_shape_limit(selection.data.shape, args.image, limit, per_plane=True)
        check_block_limit(selection.source.data, args.image, limit)
        return selection.data
    check_shape_limit(selection.data.shape, args.image, limit)
    return np.asarray(selection.data)


def _open_embeddings(args):
    """The ``--embeddings`` store, opened (and checked) before the model loads; or None."""
    path = getattr(args, "embeddings", None)
    if path is None:
        return None
    from ..model.embedding_store import EmbeddingStore

    return EmbeddingStore(path)


def _tiled_or_stored(args) -> bool:
    tile_shape = getattr(args, "tile_shape", None)
    if getattr(args, "halo", None) is not None and tile_shape is None:
        raise SAMError("--halo needs --tile-shape")
    if tile_shape is not None and min(tile_shape) < 1:
        raise SAMError("--tile-shape must be at least 1,1")
    return tile_shape is not None or getattr(args, "embeddings", None) is not None


def _load_model(args):
    from .. import load_model

    # no --model: the default; an empty one (e.g. from an unset shell variable) is an error
    source = resolve_model(args.model)
    t0 = time.perf_counter()
    net = load_model(
        source, decoder=getattr(args, "decoder", None), quantize=getattr(args, "quantize", None)
    )
    encoder = f" ({net.quantization} encoder)" if net.quantization else ""
    _info(f"model {source.name}{encoder} loaded in {time.perf_counter() - t0:.1f} s")
    return net


def _progress_printer():
    """A ``progress(done, total)`` callback that shows a counter on a terminal."""
    if not sys.stderr.isatty():
        return None

    def progress(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\rpoint batches decoded: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return progress


def _progress_bar(what: str, width: int = 30):
    """A ``progress(done, total)`` callback: a bar on a terminal, a line per tenth in a log."""
    tty = sys.stderr.isatty()
    start = time.perf_counter()
    shown = [-1]

    def progress(done: int, total: int) -> None:
        total = max(total, 1)
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (total - done) if done else 0.0
        if tty:
            filled = int(width * done / total)
            bar = "#" * filled + "-" * (width - filled)
            end = "\n" if done >= total else ""
            print(
                f"\r{what} [{bar}] {done}/{total}  {elapsed:.0f} s, {eta:.0f} s left",
                end=end,
                file=sys.stderr,
                flush=True,
            )
        elif done * 10 // total > shown[0]:
            shown[0] = done * 10 // total
            _info(f"{what}: {done}/{total} ({elapsed:.0f} s)")

    return progress


def _info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_predict(args) -> int:
    objects = objects_from_command_line(args.prompts)
    selection = _select_plane(args)
    image = _load_image(args, selection)
    _check_prompts_inside(objects, image.shape[:2])
    out = _default_out(args, selection)
    store = _open_embeddings(args)
    net = _load_model(args)

    from .. import TiledSAMPredictor
    from ..segmentation.prompt_objects import objects_to_labels, predict_objects

    predictor = TiledSAMPredictor(net, embeddings=store)
    t0 = time.perf_counter()
    predictor.set_image(
        image, contrast_limits=args.contrast_limits, tile_shape=args.tile_shape, halo=args.halo
    )
    if predictor.tiles is None:
        _info(f"image embedded in {time.perf_counter() - t0:.1f} s{_source_note(predictor)}")

    t0 = time.perf_counter()
    results = predict_objects(predictor, objects)
    if predictor.tiles is not None:
        _info(
            f"{len(predictor.tiles.grid)} tiles; prompts answered in "
            f"{time.perf_counter() - t0:.1f} s{_source_note(predictor)}"
        )
    labels = objects_to_labels(results, image.shape[:2])
    for number, (mask, score) in enumerate(results, start=1):
        print(f"object {number}: {int(mask.sum())} pixels, predicted IoU {score:.3f}")
    path = write_label_output(args, out, labels, selection)
    print(f"wrote {path} ({len(results)} objects)")
    return 0


def _check_prompts_inside(objects, image_size: tuple[int, int]) -> None:
    """Prompts outside the image fail here, before the model loads (the predictor checks again)."""
    for obj in objects:
        if obj.has_points:
            check_points(obj.point_coords, obj.point_labels, image_size)
        if obj.box is not None:
            check_boxes(obj.box, image_size)


def _source_note(predictor) -> str:
    source = predictor.embedding_source
    if source is None or source.store is None:
        return ""
    return (
        f" ({source.read} embedding(s) read from {source.store.path}, {source.computed} computed)"
    )


def cmd_auto(args) -> int:
    from ..segmentation.generator_settings import check_generator_options

    check_generator_options(
        {name: getattr(args, name) for name in GENERATOR_OPTIONS},
        name=lambda name: "--" + name.replace("_", "-"),
    )
    _check_auto_options(args)
    selection = _select_plane(args)
    image = _load_image(args, selection)
    out = _default_out(args, selection)
    if getattr(args, "mode", "amg") == "concept":
        from .concept_args import auto_concept

        return auto_concept(args, image, out, selection)
    store = _open_embeddings(args)
    net = _load_model(args)
    if getattr(args, "mode", "amg") == "ais":
        return _auto_ais(args, image, out, net, store, selection)

    from .. import SAMAutomaticMaskGenerator, masks_to_labels

    generator = SAMAutomaticMaskGenerator(
        net,
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh,
        crop_n_layers=args.crop_n_layers,
        min_mask_region_area=args.min_mask_region_area,
        tile_shape=args.tile_shape,
        halo=args.halo,
        embeddings=store,
    )
    t0 = time.perf_counter()
    records = generator.generate(
        image, progress=_progress_printer(), contrast_limits=args.contrast_limits
    )
    _info(f"{len(records)} masks generated in {time.perf_counter() - t0:.1f} s")
    labels = masks_to_labels(records, shape=image.shape[:2])
    path = write_label_output(args, out, labels, selection)
    print(f"wrote {path} ({int(np.unique(labels[labels > 0]).size)} objects)")
    return 0


def _check_auto_options(args) -> None:
    """The instance decoder's options of ``auto`` (the core's rules), before the model loads."""
    if getattr(args, "mode", "amg") == "ais":
        if args.embeddings is not None and args.tile_shape is not None:
            raise SAMError(
                "--mode ais reads --embeddings for the whole image only: drop --tile-shape"
            )
        for flag in ("center_distance_thresh", "boundary_distance_thresh"):
            if getattr(args, flag) is not None:
                check_threshold(f"--{flag.replace('_', '-')}", getattr(args, flag))
        if args.min_size is not None:
            check_size("--min-size", args.min_size)


def _watershed_options(args) -> dict:
    """The instance decoder's thresholds of ``auto``/``batch`` as
    :meth:`InstanceSegmenter.segment` names them (None: the model's default)."""
    return {
        "center_distance_threshold": args.center_distance_thresh,
        "boundary_distance_threshold": args.boundary_distance_thresh,
        "min_size": args.min_size,
    }


def _auto_ais(args, image, out, net, store, selection) -> int:
    """``auto --mode ais``: the model's instance decoder and the seeded watershed."""
    from .. import InstanceSegmenter, SAMPredictor

    predictor = SAMPredictor(net, warm_up=False, embeddings=store)
    segmenter = InstanceSegmenter(net, predictor=predictor)
    t0 = time.perf_counter()
    labels = segmenter.segment(
        image,
        contrast_limits=args.contrast_limits,
        tile_shape=args.tile_shape,
        halo=args.halo,
        **_watershed_options(args),
    )
    _info(f"instance decoder and watershed in {time.perf_counter() - t0:.1f} s")
    path = write_label_output(args, out, labels, selection)
    print(f"wrote {path} ({int(labels.max())} objects)")
    return 0


def cmd_embed(args) -> int:
    from ..model.embedding_store import EmbeddingStore
    from ..segmentation.precompute import precompute_embeddings

    if args.halo is not None and args.tile_shape is None:
        raise SAMError("--halo needs --tile-shape")
    if args.tile_shape is not None and min(args.tile_shape) < 1:
        raise SAMError("--tile-shape must be at least 1,1")
    selection = open_planes(
        args.image,
        args.channel,
        args.plane,
        args.t,
        stack=True if args.all_planes else False,
        stack_hint=" or embed every plane with --all-planes",
    )
    if args.all_planes and not selection.is_stack:
        raise ImageError(
            f"{args.image} is a single 2D image ({selection.source.describe()}): no planes"
        )
    data, stack = selection.data, selection.is_stack
    limit = getattr(args, "max_pixels", None)
    if args.tile_shape is None:  # each plane is read whole
        check_shape_limit(data.shape, args.image, limit, per_plane=True)
    check_block_limit(selection.source.data, args.image, limit)
    out = Path(args.out)
    micro_sam_format = getattr(args, "format", None) == "micro-sam"
    source = getattr(args, "from_micro_sam", None)
    if source is not None and (micro_sam_format or args.tile_shape is not None):
        raise SAMError("--from-micro-sam takes the tiling from the micro-sam store alone")
    if micro_sam_format:
        if out.exists():
            raise SAMError(f"{out} exists: --format micro-sam writes a new folder")
        if args.contrast_limits is not None:
            raise SAMError("micro-sam maps each plane by its own min..max: no --contrast-limits")
    if source is not None:
        from ..segmentation.micro_sam_embeddings import open_micro_sam_store

        open_micro_sam_store(source)  # not micro-sam's: refused before the model loads
    if micro_sam_format:
        return _embed_for_micro_sam(args, data, stack, out)
    # An existing path must be a store (never a file such as the input image, never a folder
    # of other files), and no other process may be writing it: checked before the model loads.
    store = EmbeddingStore(out)
    store.lock_for_writing()
    net = _load_model(args)
    t0 = time.perf_counter()
    if source is not None:
        from ..segmentation.micro_sam_embeddings import import_micro_sam_embeddings

        import_micro_sam_embeddings(source, data, net, store, trust_model=args.trust_model)
        print(f"wrote {out}: imported micro-sam's embeddings from {source}")
        return 0
    counts = precompute_embeddings(
        net,
        data,
        store,
        tile_shape=args.tile_shape,
        halo=args.halo,
        contrast_limits=args.contrast_limits,
        stack=stack,
        progress=_progress_bar("embeddings"),
    )
    print(
        f"wrote {out}: {counts['computed']} embedding(s) computed, {counts['reused']} already "
        f"stored, {counts['repaired']} repaired, in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def _embed_for_micro_sam(args, data, stack: bool, out: Path) -> int:
    """``embed --format micro-sam``: compute into a temporary store of ours, then write
    micro-sam's layout to ``out``."""
    import tempfile

    from ..model.embedding_store import EmbeddingStore
    from ..segmentation.micro_sam_embeddings import export_micro_sam_embeddings
    from ..segmentation.precompute import precompute_embeddings

    net = _load_model(args)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sam-embed-") as tmp:
        store = EmbeddingStore(Path(tmp) / "store.zarr")
        precompute_embeddings(
            net,
            data,
            store,
            tile_shape=args.tile_shape,
            halo=args.halo,
            stack=stack,
            progress=_progress_bar("embeddings"),
        )
        export_micro_sam_embeddings(store, data, out)
        store.close()
    print(f"wrote {out} (micro-sam's layout) in {time.perf_counter() - t0:.1f} s")
    return 0


#: The generator options shared by ``auto`` and ``batch`` (parser._add_generator_options).
GENERATOR_OPTIONS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "box_nms_thresh",
    "crop_n_layers",
    "min_mask_region_area",
)


class BatchDisplay:
    """Progress of ``batch``: on a terminal, one line with a bar for the inputs and one for
    the current input, log lines above it; elsewhere (a log file) one plain line per input."""

    WIDTH = 20

    def __init__(self, stream=None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.shown = False

    @classmethod
    def _bar(cls, done: int, total: int) -> str:
        filled = cls.WIDTH * done // total if total else 0
        return "[" + "#" * filled + "-" * (cls.WIDTH - filled) + "]"

    def __call__(self, event) -> None:
        if event.row is not None:
            self._clear()
            print(
                self._row_line(event.row, event.inputs_done, event.inputs_total),
                file=self.stream,
                flush=True,
            )
        if not self.tty:
            return
        line = f"inputs {self._bar(event.inputs_done, event.inputs_total)} "
        line += f"{event.inputs_done}/{event.inputs_total}"
        if event.current is not None and event.row is None:
            name = Path(event.current).name
            plane = f" plane {event.plane + 1}/{event.planes}" if event.planes > 1 else ""
            line += f" | {name}{plane} {self._bar(event.steps_done, event.steps_total)}"
        self._clear()
        print(line[:200], end="", file=self.stream, flush=True)
        self.shown = True

    @staticmethod
    def _row_line(row, done: int, total: int) -> str:
        where = f" [{row['worker']}]" if row.get("worker") else ""
        if row["status"] == "done":
            text = f"done {row['input']} -> {row['output']}: {row['objects']} objects in "
            text += f"{float(row['seconds']):.1f} s{where}"
        elif row["status"] == "skipped":
            text = f"skipped {row['input']}: {row['output']} exists"
        else:
            text = f"FAILED {row['input']}: {row['message']}{where}"
        return f"({done}/{total}) {text}"

    def _clear(self) -> None:
        if self.tty and self.shown:
            print("\r\033[K", end="", file=self.stream)
            self.shown = False

    def close(self) -> None:
        self._clear()
        self.stream.flush()


def cmd_batch(args) -> int:
    from ..segmentation.batch import segment_batch

    if args.prompts is not None and args.mode != "amg":
        raise SAMError(
            f"--prompts segments the prompts of each image: it does not go with --mode "
            f"{args.mode} (leave --mode out)"
        )
    concept = None
    if args.mode == "concept":
        from .concept_args import concept_of

        concept = concept_of(args)
    display = BatchDisplay()
    try:
        summary = segment_batch(
            args.inputs,
            args.out,
            model=args.model,
            mode="prompts" if args.prompts is not None else args.mode,
            prompts=args.prompts,
            watershed=_watershed_options(args),
            decoder=args.decoder,
            tile_shape=args.tile_shape,
            halo=args.halo,
            planes_per_task=args.planes_per_task,
            quantize=args.quantize,
            contrast_limits=args.contrast_limits,
            all_planes=args.all_planes,
            output_format=args.format,
            overwrite=args.overwrite,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=display,
            max_pixels=getattr(args, "max_pixels", None),
            concept=concept,
            channel=args.channel,
            z=args.plane,
            t=args.t,
            ngff_version=args.ngff_version,
            **{name: getattr(args, name) for name in GENERATOR_OPTIONS},
        )
    finally:
        display.close()
    counts = ", ".join(
        f"{summary.count(status)} {status}"
        for status in ("done", "skipped", "failed", "pending")
        if summary.count(status) or status != "pending"
    )
    print(f"{len(summary.rows)} inputs: {counts}; summary: {summary.summary_path}")
    if not summary.ok:
        print(f"some inputs failed: see {summary.summary_path}", file=sys.stderr)
    return 0 if summary.ok else 1


def _sample(stack: bool) -> np.ndarray:
    try:
        from .. import sample_data
    except ImportError as exc:  # pragma: no cover - the module ships with the package
        raise SAMError(f"the sample image is not available: {exc}") from exc
    name = "sample_stack" if stack else "sample_image"
    return np.asarray(getattr(sample_data, name)())


def cmd_sample(args) -> int:
    out = check_output(Path(args.out), overwrite=args.overwrite)
    if args.stack and out.suffix.lower() not in (".tif", ".tiff", ".npy"):
        raise ImageError(f"unsupported file type {out.suffix!r}: use .tif or .npy")
    image = _sample(args.stack)
    write_array(out, image)
    print(f"wrote {out} {image.shape} {image.dtype}")
    return 0


def prepare_for_opengl() -> None:
    """Load TensorFlow (where it is used) before napari's OpenGL driver.

    TensorFlow and Mesa's OpenGL drivers (Xvfb, virtual machines, Intel/AMD desktops) each
    carry their own LLVM; importing TensorFlow after Mesa's driver is loaded segfaults
    (see :mod:`napari_sam_keras.runtime.tensorflow_loading`). The rasterizer is left to Mesa:
    forcing its softpipe rasterizer starved every job while the window was visible (the GUI
    thread repainting napari's activity indicator held the GIL; llvmpipe paints fast).
    """
    import_ml_stack()


def open_viewer(image_path: Path | None = None, show: bool = True):
    """A napari viewer with the plugin's widget docked and the image (or the sample) loaded."""
    image = _sample(False) if image_path is None else read_image(Path(image_path))
    prepare_for_opengl()
    import napari
    from npe2 import PluginManager

    name = "sample" if image_path is None else Path(image_path).stem
    viewer = napari.Viewer(title=PLUGIN_NAME, show=show)  # this also loads the plugins
    widgets = PluginManager.instance().iter_widgets()
    if not any(
        w.plugin_name == PLUGIN_NAME and w.display_name == INTERACTIVE_WIDGET for w in widgets
    ):
        viewer.close()
        raise SAMError(
            f"napari does not know the widget {INTERACTIVE_WIDGET!r} of {PLUGIN_NAME}; "
            "reinstall the package (pip install -e .) so that its napari manifest is registered"
        )
    viewer.add_image(image, name=name)
    viewer.window.add_plugin_dock_widget(PLUGIN_NAME, INTERACTIVE_WIDGET)
    return viewer


def cmd_napari(args) -> int:
    from ..model.model_choice import proposed_default

    note = proposed_default().note  # the widget proposes demo_nuclei offline: say so here too
    if note:
        _info(note)
    open_viewer(args.image)
    import napari

    napari.run()
    # TensorFlow's and Mesa's LLVM copies crash in their exit-time destructors ("free():
    # invalid pointer"); everything is saved by now, so leave without running them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
