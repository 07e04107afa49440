"""``--point``/``--box``/``--object`` options: parsing them and grouping them into objects."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np

from ..errors import PromptError
from ..processing.prompt_rules import check_point_label, ordered_box
from ..segmentation.prompt_objects import PromptObject, require_foreground


class Prompt:
    """One ``--point``/``--box``/``--object`` option, in command-line order."""

    def __init__(self, kind: str, values: tuple[float, ...] = ()):
        self.kind = kind
        self.values = values

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"Prompt({self.kind!r}, {self.values!r})"


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
    try:
        label = check_point_label(1 if len(values) == 2 else values[2], "LABEL")
    except PromptError as exc:
        raise argparse.ArgumentTypeError(f"bad point {text!r}: {exc}") from None
    return values[0], values[1], label


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"X0,Y0,X1,Y1"`` (two opposite corners) -> (x0, y0, x1, y1) with x0 < x1, y0 < y1."""
    values = _numbers(text, "box", (4,), "X0,Y0,X1,Y1")
    try:  # the core's rule for boxes without area, as in the API and napari
        return ordered_box(values, "it")
    except PromptError as exc:
        raise argparse.ArgumentTypeError(f"bad box {text!r}: {exc}") from None


def parse_size(text: str) -> tuple[int, int]:
    """``"H,W"`` or ``"N"`` (square) -> (h, w) whole pixels, for --tile-shape and --halo."""
    values = _numbers(text, "size", (1, 2), "H,W or N (whole pixels)")
    if len(values) == 1:
        values = values * 2
    if any(v != int(v) or v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"bad size {text!r}: expected whole pixels >= 0")
    return int(values[0]), int(values[1])


def parse_pair(text: str) -> tuple[float, float]:
    """``"LO,HI"`` -> (lo, hi) with lo < hi."""
    lo, hi = _numbers(text, "contrast limits", (2,), "LO,HI")
    if not lo < hi:
        raise argparse.ArgumentTypeError(f"bad contrast limits {text!r}: LO must be below HI")
    return lo, hi


class AppendPrompt(argparse.Action):
    """Collect --point/--box/--object into one list that keeps their order."""

    def __call__(self, parser, namespace, values, option_string=None):
        prompts = list(getattr(namespace, self.dest, None) or [])
        kind = option_string.lstrip("-")
        prompts.append(Prompt(kind, tuple(values) if values is not None else ()))
        setattr(namespace, self.dest, prompts)


def objects_from_command_line(prompts: Sequence[Prompt]) -> list[PromptObject]:
    """Group the prompts in command-line order into objects.

    Points (and at most one box) form one object until ``--object`` starts the
    next; with neither points nor ``--object``, each ``--box`` is an object of
    its own.
    """
    separated = any(p.kind == "object" for p in prompts)
    has_points = any(p.kind == "point" for p in prompts)
    groups: list[dict] = []
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
            groups.append(current)
        if prompt.kind == "point":
            current["points"].append(prompt.values)
        elif current["box"] is not None:
            raise PromptError("an object can have only one box; separate objects with --object")
        else:
            current["box"] = prompt.values
    if not groups:
        raise PromptError("give at least one --point or --box")
    objects = [PromptObject.from_prompts(g["points"], g["box"]) for g in groups]
    require_foreground(objects)
    return objects
