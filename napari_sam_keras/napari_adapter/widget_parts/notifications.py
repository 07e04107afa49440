"""Telling the user what went wrong: one napari notification per problem.

A user error (no image, no prompts, a prompt outside the image, a model that
cannot be loaded, ...) is shown once with :func:`report_error` and changes no
layer.  Unexpected exceptions are shown with their type and logged with the
traceback, so they are never swallowed silently.
"""

from __future__ import annotations

import logging

from napari.utils import notifications as _napari_notifications

from ...errors import OperationCancelled, SAMError
from ...runtime.backend import BackendError

logger = logging.getLogger("napari_sam_keras")

#: Exceptions that mean "the user asked for something we cannot do"; their
#: message is the whole story.
USER_ERRORS: tuple[type[BaseException], ...] = (SAMError, BackendError)


def report_error(error: BaseException | str) -> str:
    """Show one error notification for ``error`` and return the text shown."""
    if isinstance(error, str):
        message = error
    elif isinstance(error, USER_ERRORS):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
        logger.error("napari-sam-keras failed", exc_info=error)
    _napari_notifications.show_error(message)
    return message


def report_warning(message: str) -> None:
    _napari_notifications.show_warning(message)


def report_info(message: str) -> None:
    _napari_notifications.show_info(message)


def report_outcome(error: BaseException) -> None:
    """Report how a job ended when it did not succeed: cancelled (info) or failed (error)."""
    if isinstance(error, OperationCancelled):
        report_info("SAM: cancelled; no layer was changed.")
    else:
        report_error(error)
