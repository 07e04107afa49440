"""What every worker job starts with: the network, a predictor for it, named steps.

``report`` is a :class:`~..background.task_runner.Progress` (``report(done, total)``
and ``report.step(text)``) or any ``(done, total)`` callable.
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(done, total)``, with ``progress.step(text)`` (a task_runner.Progress).
Report = Callable[[int, int], None]


def step(report, text: str) -> None:
    """Name the step under way in the status line (if ``report`` can)."""
    named = getattr(report, "step", None)
    if named is not None:
        named(text)


def load_network(models, source: str, report):
    """The network for ``source`` from ``models`` (a ``ModelStore``), naming the step when
    it must be loaded first."""
    if source not in models:
        step(report, "loading the model (an official checkpoint is converted the first time)")
    return models.get(source)


def predictor_for(network, predictors: dict):
    """The widget's :class:`~napari_sam_keras.TiledSAMPredictor` for ``network`` (made once)."""
    from ... import TiledSAMPredictor

    predictor = predictors.get(network.key)
    if predictor is None:
        predictor = predictors.setdefault(network.key, TiledSAMPredictor(network))
    return predictor
