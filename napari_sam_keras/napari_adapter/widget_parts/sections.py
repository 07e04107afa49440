"""Dock layout: controls in titled sections that fold away, inside a scroll area, with a
footer (the main buttons, the status line) that always stays visible.

At napari's default window size, and with three docks on a 1366x768 laptop screen, a flat
column of twenty controls is cut off (the status line, where errors appear, first).  A
widget built with :func:`lay_out` asks for little height: the sections scroll, the footer
does not.

How a dock widget uses it (any magicgui ``Container``; mix :class:`NestedControls` in
first, so that ``widget.points`` still finds a control placed inside a section)::

    class MyWidget(NestedControls, Container):
        def __init__(self):
            super().__init__(labels=False)
            lay_out(
                self,
                [Section("Model", [picker, folder]), Section("Advanced", [...], collapsed=True)],
                footer=[row(run_button, cancel_button), status_line],
            )

Which sections are folded is remembered across sessions (``settings.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

from magicgui.widgets import Container, PushButton
from magicgui.widgets.bases import Widget
from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea

from ..session import settings

_OPEN, _CLOSED = "\u25be", "\u25b8"
#: The scroll area's own minimum height: a few rows (the dock may be made that small).
MIN_SCROLL_HEIGHT = 90


def find_widget(container: Container, name: str) -> Widget | None:
    """The control called ``name`` in ``container`` or any container inside it (shallowest
    first), or ``None``."""
    children = list(container)
    for child in children:
        if child.name == name:
            return child
    for child in children:
        if isinstance(child, Container):
            found = find_widget(child, name)
            if found is not None:
                return found
    return None


class NestedControls:
    """Mixin for a magicgui ``Container``: ``widget.<name>`` also finds a control that sits
    inside a section (magicgui itself looks only at the direct children)."""

    def __getattr__(self, name: str):
        if not name.startswith("_") and "_list" in self.__dict__:
            found = find_widget(self, name)
            if found is not None:
                return found
        return super().__getattr__(name)


class Section(Container):
    """A titled group of controls; a click on the title folds it (``collapsed``).

    ``name`` (default: the title in lower case) is also the key under which the folded state
    is remembered; ``body`` holds the controls, with their labels.
    """

    def __init__(
        self,
        title: str,
        widgets: Sequence[Widget],
        *,
        collapsed: bool = False,
        name: str | None = None,
        tooltip: str | None = None,
    ) -> None:
        self.title = title
        key = name or title.lower().replace(" ", "_").replace("&", "and")
        self.header = PushButton(
            name=f"{key}_section",
            text=title,
            tooltip=tooltip or f"Show or hide the {title} controls.",
        )
        self.body = Container(name=f"{key}_controls", labels=True, widgets=list(widgets))
        super().__init__(name=key, labels=False, widgets=[self.header, self.body])
        self.margins = (0, 0, 0, 0)
        self.body.margins = (14, 0, 0, 4)
        header = self.header.native
        header.setFlat(True)
        header.setStyleSheet("text-align: left; font-weight: bold; padding: 2px;")
        self._collapsed = False
        remembered = settings.folded_sections().get(key)
        self.collapsed = collapsed if remembered is None else bool(remembered)
        self.header.changed.connect(self.toggle)

    @property
    def collapsed(self) -> bool:
        """Whether the controls are folded away (only the title shows)."""
        return self._collapsed

    @collapsed.setter
    def collapsed(self, value: bool) -> None:
        self._collapsed = bool(value)
        self.body.visible = not self._collapsed
        title = self.title.replace("&", "&&")  # a lone & would underline the next letter
        self.header.text = f"{_CLOSED if self._collapsed else _OPEN} {title}"

    def toggle(self, _value=None) -> None:
        """Fold or unfold (a click on the title); remembered across sessions."""
        self.collapsed = not self.collapsed
        settings.set_section_folded(self.name, self.collapsed)

    def expand(self) -> None:
        """Unfold (without changing what is remembered), e.g. when a control in it matters."""
        self.collapsed = False


class SectionsScrollArea(QScrollArea):
    """A vertical scroll area that asks for its content's width, and little height."""

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("sections_scroll_area")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

    def minimumSizeHint(self) -> QSize:
        inner = self.widget()
        width = inner.minimumSizeHint().width() if inner is not None else 0
        return QSize(width + self.verticalScrollBar().sizeHint().width(), MIN_SCROLL_HEIGHT)

    def sizeHint(self) -> QSize:
        inner = self.widget()
        height = inner.sizeHint().height() if inner is not None else 0
        return QSize(self.minimumSizeHint().width(), max(height, MIN_SCROLL_HEIGHT))


def lay_out(widget: Container, sections: Sequence[Section], footer: Sequence[Widget]) -> None:
    """Put ``sections`` in a vertical scroll area and ``footer`` below it, always visible.

    ``widget`` should be empty and built with ``labels=False`` (each section labels its own
    controls).  The sections stay a magicgui ``Container`` named ``sections`` (so
    ``reset_choices`` and name look-ups reach them); only its Qt widget is moved into the
    scroll area (magicgui 0.10 cannot nest a ``scrollable=True`` container).
    """
    content = Container(name="sections", labels=False, widgets=list(sections))
    content.margins = (0, 0, 0, 0)
    widget.extend([content, *footer])
    widget.margins = (4, 4, 4, 4)
    layout = widget.native.layout()
    area = SectionsScrollArea()
    layout.insertWidget(layout.indexOf(content.native), area)
    area.setWidget(content.native)  # takes it out of the widget's layout
    layout.setStretchFactor(area, 1)
