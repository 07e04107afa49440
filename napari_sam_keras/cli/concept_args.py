"""``--mode concept`` of ``auto`` and ``batch``: SAM 3's "find all like the examples".

``--text``, ``--exemplar X0,Y0,X1,Y1`` (positive, repeatable), ``--negative-exemplar``
(repeatable) and ``--score-threshold``; the model is a SAM 3 (``--model`` a Hugging Face
or keras-hub SAM 3 folder, default ``sam3_pcs``).
"""

from __future__ import annotations

import sys
import time

from .prompt_args import parse_box


def add_concept_options(p) -> None:
    """The concept options (``auto --mode concept`` and ``batch --mode concept``)."""
    group = p.add_argument_group(
        "find all like the examples (--mode concept; a SAM 3 model: --model FOLDER or sam3_pcs)"
    )
    group.add_argument("--text", metavar="WORDS", help="the concept in words, e.g. 'nucleus'")
    group.add_argument(
        "--exemplar",
        type=parse_box,
        action="append",
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="a box around an example object (pixels); repeat for more",
    )
    group.add_argument(
        "--negative-exemplar",
        type=parse_box,
        action="append",
        default=[],
        metavar="X0,Y0,X1,Y1",
        help="a box around an object NOT to find; repeat for more",
    )
    group.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        metavar="F",
        help="keep the instances scoring above F (0..1, default 0.5)",
    )


def concept_of(args) -> dict:
    """The concept options as ``segment_batch``'s ``concept`` (checked, no model loaded)."""
    from ..segmentation.concept_segmenter import concept_settings

    boxes = [*args.exemplar, *args.negative_exemplar]
    labels = [1] * len(args.exemplar) + [0] * len(args.negative_exemplar)
    return concept_settings(args.text, boxes, labels, args.score_threshold)


def auto_concept(args, image, out, selection) -> int:
    """``auto --mode concept``: every instance of the concept, written as labels."""
    from .. import ConceptSegmenter, load_concept_model
    from ..segmentation.concept_segmenter import check_exemplars

    concept = concept_of(args)  # bad prompts fail before the model loads
    check_exemplars(concept["exemplars"], concept["exemplar_labels"], image.shape[:2])
    t0 = time.perf_counter()
    model = load_concept_model(args.model or "sam3_pcs")
    print(f"SAM 3 {model.name} loaded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    t0 = time.perf_counter()
    result = ConceptSegmenter(model).predict(
        image,
        concept["text"],
        concept["exemplars"],
        concept["exemplar_labels"],
        score_threshold=concept["score_threshold"],
        contrast_limits=args.contrast_limits,
        tile_shape=args.tile_shape,
        halo=args.halo,
    )
    print(f"{len(result)} instances in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    labels = result.labels
    from .label_output import write_label_output

    path = write_label_output(args, out, labels, selection)
    print(f"wrote {path} ({int(len(set(labels[labels > 0].tolist())))} objects)")
    return 0
