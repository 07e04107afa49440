"""Processes end cleanly while the prompt path still compiles in the background.

A daemon thread inside the compiler when the interpreter tears down makes the
process abort ("terminate called ...", exit 134); these run real processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tifffile

ABORT_SIGNS = ("terminate called", "Aborted", "Fatal Python error", "Traceback")


def _env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def _assert_clean(result_err: str) -> None:
    for sign in ABORT_SIGNS:
        assert sign not in result_err, result_err[-3000:]


def test_script_ending_while_the_warm_up_compiles_exits_0(tiny_checkpoint):
    code = textwrap.dedent(
        f"""
        import sys, time
        from napari_sam_keras import SAMPredictor, load_model

        predictor = SAMPredictor(load_model({str(tiny_checkpoint)!r}))
        thread = predictor.prompt_path._warm_thread

        def compiling():
            # jax's XLA compile; other backends: end the script after the wait below
            frame = sys._current_frames().get(thread.ident)
            while frame is not None:
                if frame.f_code.co_name in ("backend_compile_and_load", "backend_compile"):
                    return True
                frame = frame.f_back
            return False

        start = time.time()
        while thread.is_alive() and not compiling() and time.time() - start < 20:
            time.sleep(0.0005)
        # end the script now, while the background thread is inside the compiler
        print("warm-up running:", thread.is_alive(), flush=True)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=600
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    assert "warm-up running:" in result.stdout
    _assert_clean(result.stderr)


@pytest.fixture
def small_tif(tmp_path):
    path = tmp_path / "small.tif"
    yy, xx = np.mgrid[:48, :64]
    tifffile.imwrite(path, (500 + 2000 * ((yy - 20) ** 2 + (xx - 30) ** 2 < 90)).astype(np.uint16))
    return path


def _cli(*argv, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "napari_sam_keras", *map(str, argv)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        **kwargs,
    )


def test_point_outside_the_image_exits_2_before_the_model_loads(small_tif, tiny_checkpoint):
    result = _cli("predict", small_tif, "--point", "500,3", "--model", tiny_checkpoint)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Point (x=500, y=3) lies outside the image (width 64, height 48)."
    )
    assert "loaded" not in result.stderr  # checked before the slow work
    _assert_clean(result.stderr)


def test_error_right_after_the_predictor_starts_exits_2(tmp_path, tiny_checkpoint):
    """The generator's predictor starts the warm-up; the 1 x 5000 image fails right after."""
    thin = tmp_path / "thin.tif"
    tifffile.imwrite(thin, np.arange(5000, dtype=np.uint16)[None])
    result = _cli("auto", thin, "--model", tiny_checkpoint)
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: The image is 1 x 5000 pixels"), last
    _assert_clean(result.stderr)


def test_ctrl_c_early_in_auto_exits_130(tmp_path, tiny_checkpoint):
    image = tmp_path / "cells.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(image, (rng.random((300, 400)) * 4000).astype(np.uint16))
    proc = subprocess.Popen(
        [sys.executable, "-m", "napari_sam_keras", "auto", str(image), "--model"]
        + [str(tiny_checkpoint), "--points-per-side", "8"],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    lines = []
    try:
        for line in proc.stderr:  # wait until the model is loaded: the warm-up starts next
            lines.append(line)
            if " loaded in " in line:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + rest
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert err.strip().splitlines()[-1] == "interrupted"
    _assert_clean(err)
