"""The ``napari-sam-keras`` command.

Subcommands::

    napari-sam-keras napari [IMAGE]               napari, the SAM widget, IMAGE or the sample
    napari-sam-keras predict IMAGE --point X,Y ... --box X0,Y0,X1,Y1 ... --out labels.tif
    napari-sam-keras auto IMAGE --out labels.tif  segment everything (automatic mask generator)
    napari-sam-keras sample --out sample.tif      write the sample image

Everything but ``napari`` runs without napari or Qt being imported.  The Keras backend
(``--backend``) is chosen before Keras is imported.  Mistakes in the input (a missing file,
a malformed prompt, an unknown model) are reported as one line ``error: ...`` with exit
status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .backend import (
    DEFAULT_BACKEND,
    PROJECT_ENV_VAR,
    SUPPORTED_BACKENDS,
    BackendError,
    ensure_backend,
)
from .errors import ImageError, PromptError, SAMError

#: Model used when ``--model`` is not given (overridable with this environment variable).
MODEL_ENV_VAR = "NAPARI_SAM_KERAS_MODEL"
DEFAULT_MODEL = "sam_base_sa1b"

#: Set in a process the CLI re-started to switch backend, so it never loops.
_REEXEC_ENV_VAR = "NAPARI_SAM_KERAS_CLI_REEXEC"

EXIT_USAGE = 2
PLUGIN_NAME = "napari-sam-keras"
#: The widget docked by ``napari-sam-keras napari`` (its display_name in napari.yaml).
INTERACTIVE_WIDGET = "Interactive segmentation"


class _Prompt:
    """One ``--point``/``--box``/``--object`` option, in command-line order."""

    def __init__(self, kind: str, values: tuple[float, ...] = ()):
        self.kind = kind
        self.values = values

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"_Prompt({self.kind!r}, {self.values!r})"


def _numbers(text: str, what: str, counts: Sequence[int], syntax: str) -> tuple[float, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(parts) not in counts or len(values) != len(parts):
        raise argparse.ArgumentTypeError(f"bad {what} {text!r}: expected {syntax}")
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"bad {what} {text!r}: numbers must be finite")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """``"X,Y"`` or ``"X,Y,LABEL"`` (LABEL 1 = foreground, 0 = background) -> (x, y, label)."""
    values = _numbers(text, "point", (2, 3), "X,Y or X,Y,LABEL with LABEL 1 or 0")
    label = 1 if len(values) == 2 else values[2]
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(
            f"bad point {text!r}: LABEL must be 1 (foreground) or 0 (background)"
        )
    return values[0], values[1], int(label)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"X0,Y0,X1,Y1"`` (two opposite corners) -> (x0, y0, x1, y1) with x0 < x1, y0 < y1."""
    x0, y0, x1, y1 = _numbers(text, "box", (4,), "X0,Y0,X1,Y1")
    if x0 == x1 or y0 == y1:
        raise argparse.ArgumentTypeError(f"bad box {text!r}: it has no area")
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def parse_pair(text: str) -> tuple[float, float]:
    """``"LO,HI"`` -> (lo, hi) with lo < hi."""
    lo, hi = _numbers(text, "contrast limits", (2,), "LO,HI")
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"bad contrast limits {text!r}: LO must be below HI")
    return lo, hi


class _AppendPrompt(argparse.Action):
    """Collect --point/--box/--object into one list that keeps their order."""

    def __call__(self, parser, namespace, values, option_string=None):
        prompts = list(getattr(namespace, self.dest, None) or [])
        kind = option_string.lstrip("-")
        prompts.append(_Prompt(kind, tuple(values) if values is not None else ()))
        setattr(namespace, self.dest, prompts)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--backend",
        choices=SUPPORTED_BACKENDS,
        default=argparse.SUPPRESS,
        help=f"Keras backend (default: ${PROJECT_ENV_VAR}, $KERAS_BACKEND, or {DEFAULT_BACKEND})",
    )

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument(
        "--model",
        metavar="SRC",
        default=None,
        help="preset name (sam_base_sa1b, sam_large_sa1b, sam_huge_sa1b) or a checkpoint "
        "path (.pth, .keras, .weights.h5, preset folder); default: "
        f"${MODEL_ENV_VAR} or {DEFAULT_MODEL}",
    )

    image = argparse.ArgumentParser(add_help=False)
    image.add_argument(
        "image", type=Path, help="image file (.tif, .png, .jpg, .npy, ...): 2D grey or RGB"
    )
    image.add_argument(
        "--plane",
        type=int,
        metavar="Z",
        help="for a stack (Z, Y, X[, C]): segment plane Z of the first axis",
    )
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
        help="label image to write (.tif, .png or .npy; default: IMAGE-labels.tif)",
    )

    parser = argparse.ArgumentParser(
        prog="napari-sam-keras",
        description="Segment Anything (SAM) for microscopy images, in napari or headless, "
        "on Keras 3.",
        parents=[common],
        epilog="Run 'napari-sam-keras COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "napari",
        parents=[common],
        help="open napari with the SAM widget docked and an image (default: the sample)",
        description="Open napari with the SAM widget docked and IMAGE loaded (the sample "
        "image when IMAGE is omitted).",
    )
    p.add_argument("image", nargs="?", type=Path, help="image file to open")
    p.set_defaults(func=cmd_napari)

    p = sub.add_parser(
        "predict",
        parents=[common, model, image],
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
        action=_AppendPrompt,
        type=parse_point,
        metavar="X,Y[,LABEL]",
        help="a point on the object (LABEL 1, the default) or on the background (LABEL 0)",
    )
    p.add_argument(
        "--box",
        dest="prompts",
        action=_AppendPrompt,
        type=parse_box,
        metavar="X0,Y0,X1,Y1",
        help="a box around the object",
    )
    p.add_argument(
        "--object",
        dest="prompts",
        action=_AppendPrompt,
        nargs=0,
        help="start the next object",
    )
    p.set_defaults(func=cmd_predict, prompts=[])

    p = sub.add_parser(
        "auto",
        parents=[common, model, image],
        help="segment everything (automatic mask generator); write a label image",
        description="Prompt SAM with a grid of points, keep the good masks and write them as "
        "a label image (0 = background).",
    )
    p.add_argument(
        "--points-per-side", type=int, default=32, metavar="N", help="grid size (default 32)"
    )
    p.add_argument(
        "--points-per-batch",
        type=int,
        default=64,
        metavar="N",
        help="points decoded together (default 64)",
    )
    p.add_argument(
        "--pred-iou-thresh",
        type=float,
        default=0.88,
        metavar="F",
        help="keep masks whose predicted IoU is at least F (default 0.88)",
    )
    p.add_argument(
        "--stability-score-thresh",
        type=float,
        default=0.95,
        metavar="F",
        help="keep masks whose stability score is at least F (default 0.95)",
    )
    p.add_argument(
        "--box-nms-thresh",
        type=float,
        default=0.7,
        metavar="F",
        help="IoU above which overlapping masks are merged away (default 0.7)",
    )
    p.add_argument(
        "--crop-n-layers",
        type=int,
        default=0,
        metavar="N",
        help="also segment N layers of zoomed-in crops (default 0)",
    )
    p.add_argument(
        "--min-mask-region-area",
        type=int,
        default=0,
        metavar="PX",
        help="remove holes and islands smaller than PX pixels (default 0)",
    )
    p.set_defaults(func=cmd_auto)

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
    p.set_defaults(func=cmd_sample)
    return parser


def _version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------- image IO


def read_image(path: Path) -> np.ndarray:
    """Read an image file into a NumPy array (TIFF with tifffile, .npy, else imageio)."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"image file not found: {path}")
    if path.is_dir():
        raise ImageError(f"{path} is a folder, not an image file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            return np.asarray(tifffile.imread(path))
        if suffix == ".npy":
            return np.asarray(np.load(path, allow_pickle=False))
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except Exception as exc:  # any reader failure is the user's file, not our bug
        raise ImageError(f"cannot read image {path}: {exc}") from exc


def select_plane(image: np.ndarray, plane: int | None, path: Path) -> np.ndarray:
    """Reduce ``image`` to one 2D grey or RGB(A) plane, or say how to."""
    rgb = image.ndim >= 3 and image.shape[-1] in (1, 3, 4)  # channels last
    plane_ndim = 3 if rgb else 2
    if image.ndim == plane_ndim:
        if plane is not None:
            raise ImageError(f"--plane given but {path} is a single 2D image {image.shape}")
        return image
    if image.ndim == plane_ndim + 1:
        if plane is None:
            raise ImageError(
                f"{path} is a stack of shape {image.shape}; choose a plane with --plane Z "
                f"(0..{image.shape[0] - 1})"
            )
        if not -image.shape[0] <= plane < image.shape[0]:
            raise ImageError(f"--plane {plane} is outside 0..{image.shape[0] - 1}")
        return image[plane]
    raise ImageError(
        f"{path} has shape {image.shape}; expected a 2D grey (Y, X) or RGB (Y, X, 3) image, "
        "or a stack of them"
    )


LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def check_label_path(path: Path) -> Path:
    """Fail early (before the slow work) on an output path that cannot be written."""
    path = Path(path)
    if path.suffix.lower() not in LABEL_SUFFIXES:
        raise ImageError(f"unsupported label file type {path.suffix!r}: use .tif, .png or .npy")
    if not path.parent.is_dir():
        raise ImageError(f"output folder does not exist: {path.parent}")
    return path


def write_labels(path: Path, labels: np.ndarray) -> Path:
    """Write a label image; the dtype is the smallest unsigned one that holds every label."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint8 if top < 2**8 else np.uint16 if top < 2**16 else np.uint32
    labels = labels.astype(dtype, copy=False)
    path = check_label_path(path)
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, labels, compression="zlib")
    elif suffix == ".npy":
        np.save(path, labels)
    elif suffix == ".png":
        import imageio.v3 as iio

        if dtype == np.uint32:
            raise ImageError(f"{top} labels do not fit in a PNG; write a .tif instead")
        iio.imwrite(path, labels)
    return path


def _default_out(args) -> Path:
    out = (
        args.out if args.out is not None else args.image.with_name(args.image.stem + "-labels.tif")
    )
    return check_label_path(out)


def _load_image(args) -> np.ndarray:
    image = select_plane(read_image(args.image), args.plane, args.image)
    return image


def _load_model(args):
    from . import load_model

    source = args.model or os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL
    t0 = time.perf_counter()
    net = load_model(source)
    _info(f"model {source} loaded in {time.perf_counter() - t0:.1f} s")
    return net


def _progress_printer():
    """A ``progress(done, total)`` callback that shows a counter on a terminal."""
    if not sys.stderr.isatty():
        return None

    def progress(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\rpoint batches decoded: {done}/{total}", end=end, file=sys.stderr, flush=True)

    return progress


def _info(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- commands


def group_prompts(prompts: Sequence[_Prompt]) -> list[dict]:
    """Split the ordered prompts into objects: ``[{"points": [...], "box": ... or None}]``."""
    separated = any(p.kind == "object" for p in prompts)
    has_points = any(p.kind == "point" for p in prompts)
    objects: list[dict] = []
    current: dict | None = None
    for prompt in prompts:
        if prompt.kind == "object":
            if current is None or (not current["points"] and current["box"] is None):
                raise PromptError("--object must follow the prompts of an object")
            current = None
            continue
        if current is None or (
            prompt.kind == "box" and not separated and not has_points and current["box"]
        ):
            current = {"points": [], "box": None}
            objects.append(current)
        if prompt.kind == "point":
            current["points"].append(prompt.values)
        elif current["box"] is not None:
            raise PromptError("an object can have only one box; separate objects with --object")
        else:
            current["box"] = prompt.values
    if not objects:
        raise PromptError("give at least one --point or --box")
    for number, obj in enumerate(objects, start=1):
        if obj["points"] and obj["box"] is None and all(p[2] == 0 for p in obj["points"]):
            raise PromptError(
                f"object {number} has only background points (LABEL 0); "
                "add a foreground point or a box"
            )
    return objects


def cmd_predict(args) -> int:
    objects = group_prompts(args.prompts)
    image = _load_image(args)
    out = _default_out(args)
    net = _load_model(args)

    from . import SAMPredictor

    predictor = SAMPredictor(net)
    t0 = time.perf_counter()
    predictor.set_image(image, contrast_limits=args.contrast_limits)
    _info(f"image embedded in {time.perf_counter() - t0:.1f} s")

    height, width = image.shape[:2]
    labels = np.zeros((height, width), dtype=np.uint32)
    if len(objects) > 1 and all(not obj["points"] for obj in objects):
        boxes = np.array([obj["box"] for obj in objects], dtype=np.float32)
        masks, scores, _ = predictor.predict_batch(boxes=boxes, multimask_output=False)
        results = [
            (np.asarray(masks[i, 0]), float(np.ravel(scores[i])[0])) for i in range(len(objects))
        ]
    else:
        results = [_predict_object(predictor, obj) for obj in objects]

    for number, (mask, score) in enumerate(results, start=1):
        mask = np.asarray(mask, dtype=bool)
        labels[mask] = number
        print(f"object {number}: {int(mask.sum())} pixels, predicted IoU {score:.3f}")
    path = write_labels(out, labels)
    print(f"wrote {path} ({len(results)} objects)")
    return 0


def _predict_object(predictor, obj: dict) -> tuple[np.ndarray, float]:
    """Masks for one object; a lone point is ambiguous, so take the best of three masks."""
    points = obj["points"]
    coords = np.array([p[:2] for p in points], dtype=np.float32) if points else None
    point_labels = np.array([p[2] for p in points], dtype=np.int32) if points else None
    box = np.array(obj["box"], dtype=np.float32) if obj["box"] is not None else None
    multimask = len(points) == 1 and box is None
    masks, scores, _ = predictor.predict(
        point_coords=coords, point_labels=point_labels, box=box, multimask_output=multimask
    )
    scores = np.asarray(scores).ravel()
    best = int(np.argmax(scores))
    return np.asarray(masks)[best], float(scores[best])


def cmd_auto(args) -> int:
    for name, low in (
        ("points_per_side", 1),
        ("points_per_batch", 1),
        ("crop_n_layers", 0),
        ("min_mask_region_area", 0),
    ):
        if getattr(args, name) < low:
            raise SAMError(f"--{name.replace('_', '-')} must be at least {low}")
    image = _load_image(args)
    out = _default_out(args)
    net = _load_model(args)

    from . import SAMAutomaticMaskGenerator, masks_to_labels

    generator = SAMAutomaticMaskGenerator(
        net,
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh,
        crop_n_layers=args.crop_n_layers,
        min_mask_region_area=args.min_mask_region_area,
    )
    t0 = time.perf_counter()
    records = generator.generate(
        image, progress=_progress_printer(), contrast_limits=args.contrast_limits
    )
    _info(f"{len(records)} masks generated in {time.perf_counter() - t0:.1f} s")
    labels = masks_to_labels(records, shape=image.shape[:2])
    path = write_labels(out, labels)
    print(f"wrote {path} ({int(np.unique(labels[labels > 0]).size)} objects)")
    return 0


def _sample(stack: bool) -> np.ndarray:
    try:
        from . import sample_data
    except ImportError as exc:  # pragma: no cover - the module ships with the package
        raise SAMError(f"the sample image is not available: {exc}") from exc
    name = "sample_stack" if stack else "sample_image"
    return np.asarray(getattr(sample_data, name)())


def cmd_sample(args) -> int:
    image = _sample(args.stack)
    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(out, image)
    elif suffix == ".npy":
        np.save(out, image)
    elif not args.stack and suffix in (".png", ".jpg", ".jpeg"):
        import imageio.v3 as iio

        iio.imwrite(out, image)
    else:
        raise ImageError(f"unsupported file type {out.suffix!r}: use .tif or .npy")
    print(f"wrote {out} {image.shape} {image.dtype}")
    return 0


def prepare_for_opengl() -> None:
    """Load TensorFlow before napari's OpenGL driver, and keep Mesa off llvmpipe.

    TensorFlow (which keras-cv imports whatever the Keras backend) and Mesa's OpenGL drivers
    (Xvfb, virtual machines, Intel/AMD desktops) each carry their own LLVM.  Importing
    TensorFlow after Mesa's driver is loaded segfaults, and Mesa's llvmpipe rasterizer
    segfaults on the first paint once TensorFlow is loaded; its softpipe rasterizer does not.
    ``GALLIUM_DRIVER`` only picks among Mesa's software rasterizers: GPU drivers ignore it.
    """
    os.environ.setdefault("GALLIUM_DRIVER", "softpipe")
    ensure_backend()
    import tensorflow  # noqa: F401


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
    open_viewer(args.image)
    import napari

    napari.run()
    # TensorFlow's and Mesa's LLVM copies crash in their exit-time destructors ("free():
    # invalid pointer"); everything is saved by now, so leave without running them.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --------------------------------------------------------------------------- entry point


def _apply_backend(name: str | None, argv: Sequence[str] | None) -> None:
    """Select the Keras backend; re-start the command when Keras came up with another one."""
    try:
        ensure_backend(name)
    except BackendError:
        # ``napari_sam_keras/__init__`` (or a site hook) imported Keras already.  As a console
        # script we can start again with the backend set in the environment.
        if argv is not None or os.environ.get(_REEXEC_ENV_VAR) or name is None:
            raise
        env = dict(os.environ, KERAS_BACKEND=name, **{PROJECT_ENV_VAR: name})
        env[_REEXEC_ENV_VAR] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "napari_sam_keras", *sys.argv[1:]], env)


def main(argv: Sequence[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter is noise on a command line (set it to 0 to see it).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _apply_backend(getattr(args, "backend", None), argv)
        return int(args.func(args) or 0)
    except (SAMError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # files we were asked to read or write
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
