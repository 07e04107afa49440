"""The ``napari-sam-keras`` command.

Subcommands::

    napari-sam-keras napari [IMAGE]               napari, the SAM widget, IMAGE or the sample
    napari-sam-keras predict IMAGE --point X,Y ... --box X0,Y0,X1,Y1 ... --out labels.tif
    napari-sam-keras auto IMAGE --out labels.tif  segment everything (automatic mask generator)
    napari-sam-keras batch INPUTS... --out DIR    `auto` on many images, resumable, on dask
    napari-sam-keras sample --out sample.tif      write the sample image

Everything but ``napari`` runs without napari or Qt being imported.  The Keras backend
(``--backend``) is chosen before Keras is imported.  Mistakes in the input (a missing file,
a malformed prompt, an unknown model) are reported as one line ``error: ...`` with exit
status 2.  The libraries' own warnings and log lines are counted in one line at the end
(``--verbose`` shows them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import BackendError, SAMError
from ..files.image_files import read_image, select_plane, write_labels
from ..files.write_failures import describe_write_error
from ..runtime.backend import PROJECT_ENV_VAR, ensure_backend
from . import library_noise
from .commands import open_viewer
from .parser import build_parser
from .prompt_args import objects_from_command_line, parse_box, parse_pair, parse_point

__all__ = [
    "build_parser",
    "main",
    "objects_from_command_line",
    "open_viewer",
    "parse_box",
    "parse_pair",
    "parse_point",
    "read_image",
    "select_plane",
    "write_labels",
]

#: Set in a process the CLI re-started to switch backend, so it never loops.
_REEXEC_ENV_VAR = "NAPARI_SAM_KERAS_CLI_REEXEC"
EXIT_USAGE = 2


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
    verbose = getattr(args, "verbose", False) or args.command == "napari"  # napari: its window
    with library_noise.captured(verbose) as noise:
        status = _run(args, argv)
    if noise.summary():
        print(noise.summary(), file=sys.stderr)
    return status


def _run(args, argv: Sequence[str] | None) -> int:
    try:
        _apply_backend(getattr(args, "backend", None), argv)
        return int(args.func(args) or 0)
    except (SAMError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # files we were asked to read or write
        print(f"error: {describe_write_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
