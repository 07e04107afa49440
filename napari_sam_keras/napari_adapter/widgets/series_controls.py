"""The image-series widget's controls (:class:`SeriesControls`), built and laid out in one
place; the widget (:mod:`.series_widget`) wires them up."""

from __future__ import annotations

from dataclasses import dataclass

from magicgui.widgets import CheckBox, FileEdit, Label, PushButton

from ..widget_parts.sections import Section
from ..widget_parts.status_line import wrap_text
from ..widget_parts.widget_base import row

NEXT_KEY = "PageDown"
PREVIOUS_KEY = "PageUp"


@dataclass
class SeriesControls:
    """Every control of the image-series widget, one typed attribute each.

    A field's name is its control's magicgui name (``widget.<name>`` finds it too).
    Adding a control: a field here, its construction in :func:`series_controls`, its place
    in :meth:`sections`.
    """

    folder: FileEdit
    open_button: PushButton
    skip_done: CheckBox
    done: CheckBox
    save_button: PushButton
    previous_button: PushButton
    next_button: PushButton
    status: Label

    def sections(self) -> list[Section]:
        """The dock's folding sections."""
        return [
            Section(
                "Folder",
                [self.folder, self.open_button, self.skip_done, self.done, self.save_button],
                name="series_folder",
            )
        ]

    def footer(self) -> list:
        """What stays visible under the sections: Previous, Next and where the series is."""
        return [row(self.previous_button, self.next_button), row(self.status)]


def series_controls() -> SeriesControls:
    """The image-series widget's controls (no folder open yet)."""
    folder = FileEdit(name="folder", mode="d", label="folder")
    folder.tooltip = "The folder of images; labels go to its sam-labels folder."
    status = Label(name="status", value="No folder open.")
    wrap_text(status)
    return SeriesControls(
        folder=folder,
        open_button=PushButton(
            name="open_button",
            text="Open folder",
            tooltip="Choose a folder of images; the series continues where it was left.",
        ),
        skip_done=CheckBox(
            name="skip_done",
            text="skip done images",
            value=False,
            tooltip="Next and Previous jump over the images marked done.",
        ),
        done=CheckBox(
            name="done", text="this image is done", tooltip="Mark the image as annotated."
        ),
        save_button=PushButton(
            name="save_button",
            text="Save labels",
            tooltip="Save this image's labels now (atomically, into the sam-labels folder).",
        ),
        previous_button=PushButton(
            name="previous_button",
            text=f"Previous ({PREVIOUS_KEY})",
            tooltip="Save the labels and open the previous image.",
        ),
        next_button=PushButton(
            name="next_button",
            text=f"Save and next ({NEXT_KEY})",
            tooltip="Save the labels, mark the image done and open the next one.",
        ),
        status=status,
    )
