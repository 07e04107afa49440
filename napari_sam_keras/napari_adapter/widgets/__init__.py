"""The dock widgets.  Each is a ``*_controls.py`` (one dataclass holding every control as a
typed attribute, built and placed in sections there) and a ``*_widget.py`` (wiring and
actions): interactive, automatic (with :mod:`.concept_mode`), image series, fine-tune.
See "Adding a control" in ``docs/architecture.md``.
"""
