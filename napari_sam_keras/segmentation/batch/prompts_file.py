"""Prompts for ``batch``: points and boxes per image, from a CSV or a GeoJSON file.

**CSV** (a header row, then one prompt per row; columns in any order, extra columns ignored):

``image``
    the image the prompt belongs to: its file name (``cells_01.tif``) or its path (relative
    to the prompts file's folder, or absolute).
``kind``
    ``point`` or ``box``.
``x``, ``y``, ``label``
    a point, in pixels (x = column, y = row); ``label`` 1 (on the object, the default when
    empty) or 0 (on the background).
``x0``, ``y0``, ``x1``, ``y1``
    a box: two opposite corners, in pixels.
``object`` (optional)
    rows of one image with the same ``object`` value are one object (its points and at most
    one box); a row without it is an object of its own.

**GeoJSON**: a ``FeatureCollection`` whose features are ``Point`` (a point, ``[x, y]``) or
``Polygon`` (a box: the polygon's bounding box) geometries, with the properties ``image``
(may be left out when the run has one input), ``label`` and ``object`` as in the CSV.

Each object becomes one label (1, 2, ... in the file's order), as ``napari-sam-keras
predict`` numbers its objects.  Everything is checked before any work, with the same rules
as ``predict`` (:mod:`~napari_sam_keras.processing.prompt_rules`): a bad file is one
:class:`PromptsFileError` naming the file and the row or feature.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import PromptError, PromptsFileError
from ...processing.prompt_rules import check_point_label, ordered_box
from ...processing.prompts import check_boxes, check_points
from ..prompt_objects import PromptObject, require_foreground

#: The file kinds read, by the file name's ending.
PROMPT_FILE_SUFFIXES = (".csv", ".geojson", ".json")
CSV_COLUMNS = ("image", "kind", "x", "y", "label", "x0", "y0", "x1", "y1", "object")


def read_prompts_file(
    path: str | os.PathLike, images: Sequence[str | os.PathLike]
) -> dict[str, list[dict[str, Any]]]:
    """The objects of each image of ``images`` named in the prompts file ``path``.

    Returns ``{absolute image path: [{"points": [[x, y, label], ...], "box": [x0, y0, x1,
    y1] or None}, ...]}``, the objects in the file's order (images without prompts are left
    out).  Raises :class:`PromptsFileError` for anything wrong, before any work.
    """
    path = Path(path)
    if not path.is_file():
        raise PromptsFileError(f"the prompts file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in PROMPT_FILE_SUFFIXES:
        raise PromptsFileError(
            f"the prompts file {path} is neither CSV nor GeoJSON: name it "
            f"{' or '.join(PROMPT_FILE_SUFFIXES)}"
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptsFileError(f"cannot read the prompts file {path}: {exc}") from exc
    rows = _csv_rows(path, text) if suffix == ".csv" else _geojson_rows(path, text)
    if not rows:
        raise PromptsFileError(f"the prompts file {path} holds no prompts")
    match = _ImageMatcher(path, images)
    grouped: dict[str, dict[Any, dict[str, Any]]] = {}
    for where, row in rows:
        image = match(row.get("image"), where)
        objects = grouped.setdefault(image, {})
        key = row.get("object")
        key = ("row", where) if key in (None, "") else ("object", str(key))
        obj = objects.setdefault(key, {"points": [], "box": None, "where": where})
        if row["kind"] == "point":
            obj["points"].append(row["point"])
        elif obj["box"] is not None:
            raise PromptsFileError(
                f"{where}: object {row.get('object')!r} of {Path(image).name} has a second box; "
                "an object has at most one box (give the rows different object values)"
            )
        else:
            obj["box"] = row["box"]
    out = {}
    for image, objects in grouped.items():
        plain = [{"points": o["points"], "box": o["box"]} for o in objects.values()]
        try:
            require_foreground(prompt_objects(plain))
        except PromptError as exc:
            raise PromptsFileError(f"{path}, image {Path(image).name}: {exc}") from None
        out[image] = plain
    return out


def prompt_objects(objects: Sequence[dict[str, Any]]) -> list[PromptObject]:
    """The :class:`PromptObject` s of one image's objects as :func:`read_prompts_file` gives
    them (plain JSON, as kept in a batch task and its output's settings)."""
    return [PromptObject.from_prompts(o["points"], o["box"]) for o in objects]


def check_prompts_inside(
    objects: Sequence[dict[str, Any]], image_size: tuple[int, int], image: str
) -> None:
    """Every point and box of an image's objects lies inside it (``predict``'s check)."""
    try:
        for obj in prompt_objects(objects):
            if obj.has_points:
                check_points(obj.point_coords, obj.point_labels, image_size)
            if obj.box is not None:
                check_boxes(obj.box, image_size)
    except PromptError as exc:
        raise PromptsFileError(f"the prompts of {image}: {exc}") from None


# --- reading ---------------------------------------------------------------------------


def _number(value: Any, name: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not np.isfinite(number):
        raise PromptsFileError(f"{where}: {name} must be a finite number, got {value!r}")
    return number


def _point(x: Any, y: Any, label: Any, where: str) -> list[float]:
    label = 1 if label in (None, "") else _number(label, "label", where)
    try:
        label = check_point_label(label, "label")
    except PromptError as exc:
        raise PromptsFileError(f"{where}: {exc}") from None
    return [_number(x, "x", where), _number(y, "y", where), label]


def _box(values: Sequence[Any], names: Sequence[str], where: str) -> list[float]:
    numbers = [_number(v, n, where) for v, n in zip(values, names, strict=True)]
    try:
        return list(ordered_box(numbers, "the box"))
    except PromptError as exc:
        raise PromptsFileError(f"{where}: {exc}") from None


def _csv_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    missing = [c for c in ("image", "kind") if c not in columns]
    if missing:
        raise PromptsFileError(
            f"{path}: the header row has no {' or '.join(missing)} column (columns: "
            f"{', '.join(CSV_COLUMNS)}; see 'napari-sam-keras batch --help')"
        )
    rows = []
    for number, raw in enumerate(reader, start=2):
        values = {
            (k or "").strip().lower(): (v or "").strip()
            for k, v in raw.items()
            if not isinstance(v, list)
        }
        if not any(values.values()):
            continue  # a blank line
        where = f"{path} line {number}"
        kind = values.get("kind", "").lower()
        row: dict[str, Any] = {"image": values.get("image"), "object": values.get("object")}
        if kind == "point":
            row.update(kind="point", point=_point(values.get("x"), values.get("y"),
                                                  values.get("label"), where))  # fmt: skip
        elif kind == "box":
            names = ("x0", "y0", "x1", "y1")
            row.update(kind="box", box=_box([values.get(n) for n in names], names, where))
        else:
            raise PromptsFileError(f"{where}: kind must be point or box, got {kind!r}")
        rows.append((where, row))
    return rows


def _geojson_rows(path: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PromptsFileError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, list):  # QuPath writes a plain list of features
        features = data
    else:
        raise PromptsFileError(f"{path}: expected a GeoJSON FeatureCollection")
    if not isinstance(features, list):
        raise PromptsFileError(f"{path}: the FeatureCollection's features must be a list")
    rows = []
    for index, feature in enumerate(features):
        where = f"{path} feature {index}"
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            raise PromptsFileError(f"{where}: not a GeoJSON feature with a geometry")
        props = feature.get("properties") or {}
        if not isinstance(props, dict):
            raise PromptsFileError(f"{where}: properties must be an object")
        kind, coords = geometry.get("type"), geometry.get("coordinates")
        row: dict[str, Any] = {"image": props.get("image"), "object": props.get("object")}
        try:
            if kind == "Point":
                x, y = coords[:2]
                row.update(kind="point", point=_point(x, y, props.get("label"), where))
            elif kind == "Polygon":
                ring = np.asarray(coords[0], dtype=np.float64)[:, :2]
                bounds = [*ring.min(axis=0), *ring.max(axis=0)]
                row.update(kind="box", box=_box(bounds, ("x0", "y0", "x1", "y1"), where))
            else:
                raise PromptsFileError(
                    f"{where}: a {kind} geometry; use Point (a point) or Polygon (a box)"
                )
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            if isinstance(exc, PromptsFileError):
                raise
            raise PromptsFileError(f"{where}: bad {kind} coordinates {coords!r}") from None
        rows.append((where, row))
    return rows


class _ImageMatcher:
    """An ``image`` value -> the absolute path of the run's input it names."""

    def __init__(self, path: Path, images: Sequence[str | os.PathLike]) -> None:
        self.path = path
        self.images = [os.path.abspath(p) for p in images]
        self.by_path = {os.path.normcase(os.path.realpath(p)): p for p in self.images}
        self.by_name: dict[str, list[str]] = {}
        for image in self.images:
            self.by_name.setdefault(Path(image).name, []).append(image)

    def __call__(self, value: Any, where: str) -> str:
        text = "" if value is None else str(value).strip()
        if not text:
            if len(self.images) == 1:
                return self.images[0]
            raise PromptsFileError(f"{where}: no image named (the image column or property)")
        if "/" not in text and "\\" not in text:
            found = self.by_name.get(text, [])
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise PromptsFileError(
                    f"{where}: {len(found)} inputs are called {text}; name the image by its path"
                )
        candidate = Path(text).expanduser()
        if not candidate.is_absolute():
            candidate = self.path.parent / candidate
        key = os.path.normcase(os.path.realpath(candidate))
        if key in self.by_path:
            return self.by_path[key]
        names = ", ".join(sorted(self.by_name)[:5])
        more = ", ..." if len(self.by_name) > 5 else ""
        raise PromptsFileError(
            f"{where}: the image {text!r} is not among the inputs ({names}{more})"
        )
