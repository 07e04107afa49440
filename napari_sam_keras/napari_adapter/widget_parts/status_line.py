"""The widget's status line: what is running, what was done, and the last error.

An error stays until the next action (a click, a button), with a **details**
expander holding the full message (and, for unexpected errors, the
traceback).  Long texts wrap inside the dock and never widen it.
"""

from __future__ import annotations

import traceback

from magicgui.widgets import Container, Label, PushButton, TextEdit
from qtpy.QtWidgets import QSizePolicy

from ...errors import OperationCancelled
from .notifications import USER_ERRORS

_SHOW, _HIDE = "details \u25b8", "details \u25be"


def wrap_text(label: Label) -> None:
    """Wrap the text and take the dock's width instead of asking for the text's width."""
    native = label.native
    native.setWordWrap(True)
    native.setMinimumWidth(1)
    native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)


class StatusLine(Container):
    """A wrapped status text with an optional "details" expander for the last error."""

    def __init__(self, name: str = "status") -> None:
        self._text = Label(name="text", value="")
        self._details_button = PushButton(
            name="details_button",
            text=_SHOW,
            visible=False,
            tooltip="Show or hide the full message of the last problem.",
        )
        self._details = TextEdit(name="details", value="", visible=False)
        super().__init__(
            name=name,
            label="",
            labels=False,
            widgets=[self._text, self._details_button, self._details],
        )
        self.margins = (0, 0, 0, 0)
        wrap_text(self._text)
        self._details.native.setReadOnly(True)
        self._details.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._details.native.setMaximumHeight(140)
        self._details_button.changed.connect(self.toggle_details)
        self.error_shown = False

    @property
    def value(self) -> str:
        """The text shown."""
        return self._text.value

    @property
    def details(self) -> str:
        """The full text of the last error (empty when none is shown)."""
        return self._details.value if self.error_shown else ""

    def show(self, text: str, details: str = "") -> None:
        """Show ``text``; an error shown so far goes away (a new action began).

        ``details``: a longer explanation behind the **details** expander (the status line
        stays short: it sits below the scrolling sections and takes their room).
        """
        self.error_shown = False
        self._text.value = text
        self._text.native.setStyleSheet("")
        self._details_button.text = _SHOW
        self._details_button.visible = bool(details)
        self._details.visible = False
        self._details.value = details

    def show_error(self, message: str, details: str | None = None) -> None:
        """Show an error until the next :meth:`show`; ``details`` go into the expander."""
        self.error_shown = True
        first = message.strip().splitlines()[0] if message.strip() else "error"
        self._text.value = f"\u26a0 {first}"
        self._text.native.setStyleSheet("color: #ff7070;")
        full = message if details is None else f"{message}\n\n{details}"
        self._details.value = full
        self._details_button.text = _SHOW
        self._details_button.visible = True
        self._details.visible = False

    def show_outcome(self, error: BaseException) -> None:
        """How a job ended when it did not succeed: cancelled (plain text) or an error."""
        if isinstance(error, OperationCancelled):
            self.show("cancelled; no layer was changed")
        elif isinstance(error, USER_ERRORS):
            self.show_error(str(error))
        else:
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self.show_error(f"{type(error).__name__}: {error}", trace)

    @property
    def details_open(self) -> bool:
        """Whether the full error text is unfolded."""
        return not self._details.native.isHidden()

    def toggle_details(self, _value=None) -> None:
        """Show or hide the full error text."""
        show = not self.details_open
        self._details.visible = show
        self._details_button.text = _HIDE if show else _SHOW
