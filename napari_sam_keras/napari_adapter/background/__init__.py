"""Work off the Qt thread: the task runner every widget uses (:mod:`.task_runner`), importing
Keras in the background (:mod:`.safe_import`), and embedding ahead of the user, after the
clicks: the neighbouring slices (:mod:`.prefetch`) and the series' next image
(:mod:`.series_prefetch`).
"""
