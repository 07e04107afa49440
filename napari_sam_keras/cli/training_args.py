"""The options of ``napari-sam-keras finetune`` and ``evaluate`` (see :mod:`.training_commands`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .training_commands import INSTANCE_CHOICES, MODES, cmd_evaluate, cmd_finetune


def _data_options(p) -> None:
    p.add_argument(
        "--images",
        nargs="+",
        required=True,
        metavar="IMAGE",
        help="image files, folders or glob patterns (quote them): 2D grey or RGB images, or "
        "(Z, Y, X) stacks used plane by plane",
    )
    p.add_argument(
        "--labels",
        nargs="+",
        required=True,
        metavar="LABELS",
        help="their label images (0 = background, 1, 2, ... = objects), paired with the "
        "images by name: IMG.tif goes with IMG.tif, IMG-labels.tif, IMG_labels.tif, "
        "IMG_mask.png, ...",
    )


def add_finetune(sub, parents) -> None:
    p = sub.add_parser(
        "finetune",
        parents=parents,
        help="fine-tune a model on your images and their labels; write a model folder",
        description="Fine-tune a SAM model on annotated images (micro-sam's recipe: objects "
        "prompted by points and boxes, then corrective clicks), and write the new model as a "
        "folder that --model, the napari widgets and the Python API read. Single-click and box "
        "IoU on the held-out images are printed before and after. An interrupted run is "
        "continued with --resume.",
        epilog="examples:\n"
        "  napari-sam-keras finetune --images data/images --labels data/labels --out my-model\n"
        "  napari-sam-keras finetune --images 'plate/*.tif' --labels plate/sam-labels "
        "--out my-model --model demo_nuclei --epochs 20\n"
        "  napari-sam-keras predict next.tif --model my-model --point 120,80",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_options(p)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="MODEL_DIR",
        help="the new model folder (must not exist); checkpoints go to MODEL_DIR.checkpoints "
        "until the run ends",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="decoder",
        help="decoder: image encoder frozen, embeddings computed once (fast, default); lora: "
        "low-rank adapters in the encoder too; full: every weight (slow without a GPU)",
    )
    p.add_argument("--epochs", type=int, metavar="N", help="passes over the training images")
    p.add_argument(
        "--validation",
        type=float,
        default=0.2,
        metavar="F",
        help="fraction of the images held out to measure the gain (default 0.2)",
    )
    p.add_argument(
        "--learning-rate", type=float, metavar="F", help="optimizer step size (default: the core's)"
    )
    p.add_argument(
        "--objects-per-image",
        type=int,
        metavar="N",
        help="objects sampled per image and step (default: the core's)",
    )
    p.add_argument(
        "--no-instance-decoder",
        dest="instance_decoder",
        action="store_false",
        help="do not train an instance decoder (for 'auto --mode ais')",
    )
    p.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        help="train on the images as they are, not also turned and mirrored (4 times fewer "
        "steps and image embeddings: the quick choice for a large model on a CPU)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default 0)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from its last complete epoch (MODEL_DIR.checkpoints)",
    )
    p.set_defaults(func=cmd_finetune)


def add_evaluate(sub, parents) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=parents,
        help="measure a model on annotated images: click/box IoU, instance mSA",
        description="Measure how well a model segments annotated images: the mean IoU of an "
        "object from a single click, from its box, and after corrective clicks; with an "
        "instance decoder (or --instances amg) also the mean segmentation accuracy of the "
        "automatic output (mSA over IoU 0.5-0.95, SA50, SA75, F1).",
        epilog="example:\n"
        "  napari-sam-keras evaluate --model my-model --images test/images --labels "
        "test/labels",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _data_options(p)
    p.add_argument(
        "--instances",
        choices=INSTANCE_CHOICES,
        default="auto",
        help="automatic segmentation to score: ais (the instance decoder), amg (the automatic "
        "mask generator; slow), none; auto (default): ais when the model has a decoder",
    )
    p.set_defaults(func=cmd_evaluate)
