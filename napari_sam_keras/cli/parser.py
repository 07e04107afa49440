"""The ``napari-sam-keras`` argument parser: one small function per subcommand."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..model.config import DEFAULT_MODEL, MODEL_ENV_VAR
from ..model.quantization import QUANTIZE_MODES
from ..runtime.backend import DEFAULT_BACKEND, PROJECT_ENV_VAR, SUPPORTED_BACKENDS
from .commands import cmd_auto, cmd_batch, cmd_embed, cmd_napari, cmd_predict, cmd_sample
from .concept_args import add_concept_options
from .prompt_args import AppendPrompt, parse_box, parse_pair, parse_point, parse_size
from .training_args import add_evaluate, add_finetune


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand; ``args.func(args)`` runs the chosen one."""
    common, model, image, tiling = _shared_options()
    parser = argparse.ArgumentParser(
        prog="napari-sam-keras",
        description="Segment Anything (SAM) for microscopy images, in napari or headless, "
        "on Keras 3.",
        parents=[common],
        epilog="Run 'napari-sam-keras COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_napari(sub, common)
    _add_predict(sub, [common, model, image, tiling])
    _add_auto(sub, [common, model, image, tiling])
    _add_embed(sub, [common, model])
    _add_batch(sub, [common, model])
    add_finetune(sub, [common, model])
    add_evaluate(sub, [common, model])
    _add_sample(sub, common)
    return parser


def _shared_options() -> tuple[argparse.ArgumentParser, ...]:
    """Option groups shared by several subcommands: backend; model; image and output; tiling."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--backend",
        choices=SUPPORTED_BACKENDS,
        default=argparse.SUPPRESS,
        help=f"Keras backend (default: ${PROJECT_ENV_VAR}, $KERAS_BACKEND, or {DEFAULT_BACKEND})",
    )
    common.add_argument(
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the warnings and log lines of the libraries used (else counted in one line)",
    )

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--model",
        metavar="SRC",
        default=None,
        help="preset name (sam_base_sa1b, sam_large_sa1b, sam_huge_sa1b), demo_nuclei, or a "
        "checkpoint path (.pth, .keras, .weights.h5, preset folder); default: "
        f"${MODEL_ENV_VAR} or {DEFAULT_MODEL}",
    )
    model.add_argument(
        "--quantize",
        choices=QUANTIZE_MODES,
        default=None,
        help="int8: the image encoder's weights quantized to int8 with Keras' own quantization "
        "(see 'int8 encoders' in the documentation for its speed and agreement); "
        "default: float32",
    )

    image = argparse.ArgumentParser(add_help=False)
    image.add_argument(
        "image", type=Path, help="image file (.tif, .png, .jpg, .npy, ...): 2D grey or RGB"
    )
    _axis_options(image)
    image.add_argument(
        "--contrast-limits",
        type=parse_pair,
        metavar="LO,HI",
        help="intensity range mapped to black..white (default: the image's min..max "
        "for non-8-bit images)",
    )
    image.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="label image to write (.tif, .png, .npy or .ome.zarr; default: IMAGE-labels.tif, "
        "for an OME-Zarr IMAGE its labels/napari-sam-keras); a TIFF or OME-Zarr keeps the "
        "image's pixel sizes; never the input image, and never an existing file unless "
        "--overwrite is given",
    )
    _ngff_option(image)
    image.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the output file if it exists (written to a temporary name, then renamed)",
    )
    _max_pixels_option(image)

    tiling = argparse.ArgumentParser(add_help=False)
    _tiling_options(tiling)
    tiling.add_argument(
        "--embeddings",
        type=Path,
        metavar="STORE",
        help="embedding store (from 'napari-sam-keras embed'): what it holds is read, not "
        "computed; what is computed is added (a missing STORE is created). Its tiling is "
        "used when --tile-shape is not given",
    )
    return common, model, image, tiling


def _max_pixels_option(parser) -> None:
    from ..files.resource_limits import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV_VAR

    parser.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse an image read whole whose file header claims more than N pixels, before "
        f"it is decoded (default: ${MAX_PIXELS_ENV_VAR} or {DEFAULT_MAX_PIXELS:,}); for larger "
        "images use --tile-shape",
    )


def _ngff_option(parser) -> None:
    parser.add_argument(
        "--ngff-version",
        choices=("0.5", "0.4"),
        default="0.5",
        help="NGFF version of an OME-Zarr output (default 0.5, Zarr v3; 0.4: Zarr v2); "
        "labels written into an input OME-Zarr take the image's version",
    )


def _axis_options(parser, z_parser=None) -> None:
    """``--channel``, ``--z`` (alias ``--plane``) and ``--t``: a plane chosen by axis name
    (the file's OME/ImageJ/OME-Zarr axes; without them a leading axis is Z)."""
    (z_parser or parser).add_argument(
        "--z",
        "--plane",
        dest="plane",
        type=int,
        metavar="Z",
        help="for a stack: segment plane Z of its Z axis (a file without axis metadata: of "
        "its first axis)",
    )
    parser.add_argument(
        "--channel",
        type=int,
        metavar="C",
        help="for a multichannel image: segment channel C (an RGB(A) image: that colour alone)",
    )
    parser.add_argument("--t", type=int, metavar="T", help="for a time series: time point T")


def _tiling_options(parser) -> None:
    parser.add_argument(
        "--tile-shape",
        type=parse_size,
        metavar="H,W",
        help="cut the image into tiles of H x W pixels (N: square), each embedded with its "
        "halo, for images much larger than the model's input (1024 px)",
    )
    parser.add_argument(
        "--halo",
        type=parse_size,
        metavar="H,W",
        help="pixels of the neighbouring tiles embedded on each side of a tile (default 0); "
        "more than the largest object's radius keeps objects on tile borders whole",
    )


def _add_napari(sub, common) -> None:
    p = sub.add_parser(
        "napari",
        parents=[common],
        help="open napari with the SAM widget docked and an image (default: the sample)",
        description="Open napari with the SAM widget docked and IMAGE loaded (the sample "
        "image when IMAGE is omitted).",
    )
    p.add_argument("image", nargs="?", type=Path, help="image file to open")
    p.set_defaults(func=cmd_napari)


def _add_predict(sub, parents) -> None:
    p = sub.add_parser(
        "predict",
        parents=parents,
        help="segment objects given by points and boxes; write a label image",
        description="Segment the objects given by --point and --box prompts and write a label "
        "image: 0 = background, 1, 2, ... = the objects in command-line order. Coordinates are "
        "pixels: X = column, Y = row (napari shows (row, column)). Prompts form one object "
        "(any number of points and at most one box) until --object starts the next one; "
        "with neither points nor --object, each --box is an object of its own.",
        epilog="examples:\n"
        "  napari-sam-keras predict cells.tif --point 120,80 --out cell.tif\n"
        "  napari-sam-keras predict cells.tif --box 10,10,60,50 --box 70,20,130,90\n"
        "  napari-sam-keras predict cells.tif --point 120,80 --point 140,90,0 "
        "--object --box 10,10,60,50",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--point",
        dest="prompts",
        action=AppendPrompt,
        type=parse_point,
        metavar="X,Y[,LABEL]",
        help="a point on the object (LABEL 1, the default) or on the background (LABEL 0)",
    )
    p.add_argument(
        "--box",
        dest="prompts",
        action=AppendPrompt,
        type=parse_box,
        metavar="X0,Y0,X1,Y1",
        help="a box around the object",
    )
    p.add_argument(
        "--object",
        dest="prompts",
        action=AppendPrompt,
        nargs=0,
        help="start the next object",
    )
    p.set_defaults(func=cmd_predict, prompts=[])


def _add_auto(sub, parents) -> None:
    p = sub.add_parser(
        "auto",
        parents=parents,
        help="segment everything (automatic mask generator or instance decoder); write a "
        "label image",
        description="Prompt SAM with a grid of points, keep the good masks and write them as "
        "a label image (0 = background).",
    )
    _add_generator_options(p)
    _add_instance_decoder_options(p)
    add_concept_options(p)
    p.set_defaults(func=cmd_auto)


def _add_instance_decoder_options(p, concept_note: str = "") -> None:
    """``--mode`` and the instance decoder's options (``auto`` and ``batch``): micro-sam's
    instance decoder and its watershed thresholds."""
    ais = p.add_argument_group(
        "instance decoder (--mode ais; micro-sam models with a decoder, e.g. vit_b_lm)"
    )
    ais.add_argument(
        "--mode",
        choices=("amg", "ais", "concept"),
        default="amg",
        help="amg: the automatic mask generator (any SAM, default); ais: the model's "
        "instance decoder + watershed (seconds instead of minutes); concept: SAM 3 finds "
        f"all objects like the --exemplar boxes and/or the --text{concept_note}",
    )
    ais.add_argument(
        "--decoder",
        metavar="PATH",
        help="micro-sam decoder file (default: inside the model file, or <model>_decoder.pt "
        "beside it)",
    )
    ais.add_argument(
        "--center-distance-thresh",
        type=float,
        metavar="F",
        help="seeds where the centre distance is below F (default: micro-sam's for the model)",
    )
    ais.add_argument(
        "--boundary-distance-thresh",
        type=float,
        metavar="F",
        help="seeds where the boundary distance is below F (default: micro-sam's for the model)",
    )
    ais.add_argument(
        "--min-size",
        type=int,
        metavar="PX",
        help="remove objects smaller than PX pixels (default 100)",
    )


def _add_generator_options(p) -> None:
    """The automatic mask generator's options (``auto`` and ``batch``), with its defaults."""
    from ..segmentation.generator_settings import DEFAULTS

    for name, kind, metavar, what in (
        ("points_per_side", int, "N", "grid size"),
        ("points_per_batch", int, "N", "points decoded together"),
        ("pred_iou_thresh", float, "F", "keep masks whose predicted IoU is at least F"),
        ("stability_score_thresh", float, "F", "keep masks whose stability score is at least F"),
        ("box_nms_thresh", float, "F", "IoU above which overlapping masks are merged away"),
        ("crop_n_layers", int, "N", "also segment N layers of zoomed-in crops"),
        ("min_mask_region_area", int, "PX", "remove holes and islands smaller than PX pixels"),
    ):
        default = getattr(DEFAULTS, name)
        p.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=default,
            metavar=metavar,
            help=f"{what} (default {default})",
        )


def _add_batch(sub, parents) -> None:
    p = sub.add_parser(
        "batch",
        parents=parents,
        help="segment many images (files, folders, patterns); resumable; optionally on dask",
        description="Segment every image of INPUTS as 'auto' does and write one label image "
        "per input into --out DIR, plus DIR/summary.csv (input, output, status, objects, "
        "seconds, worker, message). Outputs appear only when complete, so a run that is "
        "interrupted is resumed by running it again: inputs whose output exists are skipped. "
        "A bad input is reported and the others go on; the exit status is 0 only if every "
        "input succeeded.",
        epilog="examples:\n"
        "  napari-sam-keras batch plate/ --out plate-labels\n"
        "  napari-sam-keras batch 'data/**/*.tif' --out labels --all-planes --workers 2\n"
        "  napari-sam-keras batch plate/ --out labels --scheduler tcp://server:8786",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (their .tif/.png/.jpg/.npy/... files) or glob patterns "
        "(quote them; ** recurses)",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder of the label images"
    )
    p.add_argument(
        "--prompts",
        type=Path,
        metavar="FILE",
        help="segment the points and boxes of each image given in FILE, as 'predict' does "
        "(one label per object): a CSV with the columns image,kind,x,y,label,x0,y0,x1,y1"
        "[,object] (kind point or box) or a GeoJSON of Point and Polygon (box) features "
        "with an 'image' property; checked before any work (see docs/batch.md)",
    )
    p.add_argument(
        "--all-planes",
        action="store_true",
        help="segment every plane of a stack (Z, Y, X) into a label stack (else a stack is "
        "reported as a failed input)",
    )
    _axis_options(p)
    p.add_argument(
        "--format",
        choices=("tiff", "ome-zarr"),
        default="tiff",
        help="label image format: tiff (INPUT-labels.tif, default) or ome-zarr "
        "(INPUT-labels.ome.zarr, see --ngff-version); both keep the input's pixel sizes",
    )
    _ngff_option(p)
    p.add_argument(
        "--contrast-limits",
        type=parse_pair,
        metavar="LO,HI",
        help="intensity range mapped to black..white (default: each image's min..max "
        "for non-8-bit images)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="segment again the inputs whose label image exists (else they are skipped)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run on a local dask cluster of N worker processes (needs dask.distributed)",
    )
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on an existing dask cluster, e.g. tcp://server:8786",
    )
    p.add_argument(
        "--planes-per-task",
        type=int,
        metavar="N",
        help="with --workers/--scheduler and --all-planes: hand the planes of a stack to the "
        "workers N at a time (default 1), assembled into one output",
    )
    _tiling_options(p)
    _add_generator_options(p)
    _add_instance_decoder_options(p, " (the same boxes in every image)")
    _max_pixels_option(p)
    add_concept_options(p)
    p.set_defaults(func=cmd_batch)


def _add_embed(sub, parents) -> None:
    p = sub.add_parser(
        "embed",
        parents=parents,
        help="precompute the image embeddings of an image or a stack into a store",
        description="Compute the embeddings of IMAGE (one plane, or every plane of a stack, "
        "each tile of each) into the embedding store STORE.zarr, which 'predict', 'auto', "
        "the Python API (embeddings=STORE) and the napari widgets then read instead of "
        "running the image encoder. A store that was interrupted resumes where it stopped; "
        "damaged entries are computed again.",
        epilog="examples:\n"
        "  napari-sam-keras embed cells.tif --out cells.zarr\n"
        "  napari-sam-keras embed stack.tif --all-planes --out stack.zarr\n"
        "  napari-sam-keras embed slide.tif --tile-shape 1024,1024 --halo 128,128 "
        "--out slide.zarr\n"
        "  napari-sam-keras embed cells.tif --format micro-sam --out cells-microsam.zarr\n"
        "  napari-sam-keras embed cells.tif --from-micro-sam cells-microsam.zarr --model "
        "vit_b_lm.pt --out cells.zarr",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", type=Path, help="image file (.tif, .png, .npy, ...): 2D or a stack")
    planes = p.add_mutually_exclusive_group()
    _axis_options(p, z_parser=planes)
    planes.add_argument(
        "--all-planes", action="store_true", help="for a stack: every plane (one embedding each)"
    )
    p.add_argument(
        "--contrast-limits",
        type=parse_pair,
        metavar="LO,HI",
        help="intensity range mapped to black..white (default: each plane's min..max for "
        "non-8-bit images); predict and auto must be given the same",
    )
    _tiling_options(p)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="STORE.zarr",
        help="the embedding store (a folder); an existing one is checked and completed; a "
        "new one is made only in a missing or empty folder",
    )
    p.add_argument(
        "--format",
        choices=("napari-sam-keras", "micro-sam"),
        default="napari-sam-keras",
        help="micro-sam: write micro-sam's embedding zarr (features channels first, its "
        "attributes) to --out, a new folder, for micro-sam to use (default: our store)",
    )
    p.add_argument(
        "--from-micro-sam",
        type=Path,
        metavar="MICRO_SAM.zarr",
        help="import embeddings micro-sam computed for IMAGE (checked: its data_signature, "
        "model and embedding shape) into the store --out instead of computing them; the "
        "micro-sam store is only read",
    )
    p.add_argument(
        "--trust-model",
        action="store_true",
        help="with --from-micro-sam: accept a --model whose name is not the micro-sam "
        "store's model_type (the same weights under another name)",
    )
    _max_pixels_option(p)
    p.set_defaults(func=cmd_embed)


def _add_sample(sub, common) -> None:
    p = sub.add_parser(
        "sample",
        parents=[common],
        help="write the sample image (a synthetic fluorescence-like image)",
        description="Write the sample image that 'napari-sam-keras napari' opens.",
    )
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write")
    p.add_argument(
        "--stack", action="store_true", help="write the 3D sample stack instead of the 2D image"
    )
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    p.set_defaults(func=cmd_sample)


def _version() -> str:
    from .. import __version__

    return __version__
