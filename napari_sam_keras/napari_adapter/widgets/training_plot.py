"""The Fine-tune widget's live plot: training loss and validation IoU, one point per epoch.

Drawn with matplotlib's Qt canvas (``FigureCanvasQTAgg``) inside a magicgui container,
in the colours of the viewer's napari theme.  The loss has the left axis, the IoUs (and the
instance decoder's mSA, when trained) the right one, from 0 to 1.
"""

from __future__ import annotations

from magicgui.widgets import Container

from ...processing.training_figures import history_columns

#: The curves: history key -> (legend text, axis, line style).
CURVES = {
    "loss": ("training loss", "loss", "-"),
    "instance_loss": ("instance decoder loss", "loss", ":"),
    "val_point_iou": ("IoU, 1 click", "iou", "-"),
    "val_box_iou": ("IoU, box", "iou", "--"),
    "val_msa": ("mSA, instances", "iou", ":"),
}


def _theme_colours(viewer) -> tuple[str, str]:
    """(background, text) of the viewer's napari theme; a dark pair if it cannot be read."""
    try:
        from napari.utils.theme import get_theme

        theme = get_theme(viewer.theme)
        return theme.canvas.as_hex(), theme.text.as_hex()
    except Exception:  # an older napari or a custom theme: the dark defaults
        return "#262930", "#f0f1f2"


class TrainingPlot(Container):
    """A small figure that :meth:`show_history` redraws after every epoch."""

    def __init__(self, viewer=None, height: int = 190) -> None:
        super().__init__(name="training_plot", label="training", labels=False)
        self.margins = (0, 0, 0, 0)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        background, text = _theme_colours(viewer)
        self.figure = Figure(figsize=(3.2, 2.0), dpi=90, facecolor=background)
        self.loss_axes = self.figure.add_subplot(111, facecolor=background)
        self.iou_axes = self.loss_axes.twinx()
        axes = {"loss": self.loss_axes, "iou": self.iou_axes}
        for ax in axes.values():
            ax.tick_params(colors=text, labelsize=7)
            for spine in ax.spines.values():
                spine.set_color(text)
        self.loss_axes.set_xlabel("epoch", color=text, fontsize=7)
        self.loss_axes.set_ylabel("loss", color=text, fontsize=7)
        self.iou_axes.set_ylabel("IoU / mSA", color=text, fontsize=7)
        self.iou_axes.set_ylim(0, 1)
        colours = ("#f5a623", "#f5a623", "#4fc3f7", "#4fc3f7", "#9ccc65")
        #: The curves by history key (``matplotlib.lines.Line2D``).
        self.lines = {}
        for (key, (name, axis, style)), colour in zip(CURVES.items(), colours, strict=True):
            (self.lines[key],) = axes[axis].plot([], [], style, color=colour, lw=1.4, label=name)
            self.lines[key].set_marker("o")
            self.lines[key].set_markersize(2.5)
        self.figure.tight_layout(pad=0.6)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(height)
        self.native.layout().addWidget(self.canvas)
        self._text = text

    def clear(self) -> None:
        """Empty every curve (a new run starts)."""
        self.show_history([])

    def show_history(self, history) -> None:
        """Draw ``history``: ``FineTuneResult.history``'s per-epoch records."""
        columns = history_columns(history)
        shown = []
        for key, line in self.lines.items():
            values = columns.get(key, [])
            epochs = [i + 1 for i, v in enumerate(values) if v is not None]
            line.set_data(epochs, [v for v in values if v is not None])
            line.set_visible(bool(epochs))
            if epochs:
                shown.append(line)
        self.loss_axes.relim()
        self.loss_axes.autoscale_view()
        n = max((len(v) for v in columns.values()), default=0)
        self.loss_axes.set_xlim(0.5, max(n, 1) + 0.5)
        legend = self.loss_axes.get_legend()
        if legend is not None:
            legend.remove()
        if shown:
            legend = self.loss_axes.legend(
                handles=shown, fontsize=6, loc="center right", frameon=False, labelcolor=self._text
            )
        self.canvas.draw_idle()
