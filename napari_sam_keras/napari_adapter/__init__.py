"""napari adapter: dock widgets that put the headless core into napari.

* :class:`~.widgets.interactive_widget.InteractiveSegmentationWidget`: points/boxes -> labels.
* :class:`~.widgets.automatic_widget.AutomaticSegmentationWidget`: everything on a slice -> labels.
* :class:`~.widgets.series_widget.ImageSeriesWidget`: a folder of images, one after the other.
* :class:`~.widgets.finetune_widget.FineTuneWidget`: fine-tune the model on the annotations.

The widgets hold no model logic; they read layers, run the core in a worker
thread and write results into Labels layers (undoable, never overwriting).
Open them with::

    dock, widget = viewer.window.add_plugin_dock_widget(
        "napari-sam-keras", "Interactive segmentation")
"""

from __future__ import annotations

#: Names of the widget contributions, for ``add_plugin_dock_widget``.
PLUGIN_NAME = "napari-sam-keras"
INTERACTIVE_WIDGET = "Interactive segmentation"
AUTOMATIC_WIDGET = "Automatic segmentation"
SERIES_WIDGET = "Image series"
FINETUNE_WIDGET = "Fine-tune"

__all__ = [
    "AUTOMATIC_WIDGET",
    "FINETUNE_WIDGET",
    "INTERACTIVE_WIDGET",
    "PLUGIN_NAME",
    "SERIES_WIDGET",
    "AutomaticSegmentationWidget",
    "FineTuneWidget",
    "ImageSeriesWidget",
    "InteractiveSegmentationWidget",
]


def __getattr__(name: str):
    if name == "InteractiveSegmentationWidget":
        from .widgets.interactive_widget import InteractiveSegmentationWidget

        return InteractiveSegmentationWidget
    if name == "AutomaticSegmentationWidget":
        from .widgets.automatic_widget import AutomaticSegmentationWidget

        return AutomaticSegmentationWidget
    if name == "ImageSeriesWidget":
        from .widgets.series_widget import ImageSeriesWidget

        return ImageSeriesWidget
    if name == "FineTuneWidget":
        from .widgets.finetune_widget import FineTuneWidget

        return FineTuneWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
