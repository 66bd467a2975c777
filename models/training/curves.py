"""Training curves as a self-contained HTML plot (plotly), browsable next to a model."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def training_curve_html(history: Mapping[str, Sequence[float]], title: str, path: str | os.PathLike[str]) -> str:
    """Write one panel per metric (``loss`` with ``val_loss`` beside it, ``auc`` with
    ``val_auc``, ...) against the epoch to a standalone HTML file.

    Args:
        history: Keras ``History.history``: metric name -> one value per epoch.
        title: the plot's title (e.g. the model config and version).
        path: the HTML file to write (its folder must exist).

    Returns:
        ``path`` as a string.

    Raises:
        ValueError: an empty history.
    """
    metrics = sorted({name.removeprefix("val_") for name in history})
    if not metrics:
        raise ValueError("the training history is empty: nothing to plot")
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=metrics)
    for column, metric in enumerate(metrics, start=1):
        for name, dash in ((metric, "solid"), (f"val_{metric}", "dash")):
            if name in history:
                values = list(history[name])
                figure.add_trace(
                    go.Scatter(x=list(range(1, len(values) + 1)), y=values, name=name, line={"dash": dash}),
                    row=1,
                    col=column,
                )
        figure.update_xaxes(title_text="epoch", row=1, col=column)
    figure.update_layout(title=title, height=380, width=max(480, 380 * len(metrics)))
    figure.write_html(os.fspath(path), include_plotlyjs=True, full_html=True)
    return os.fspath(path)
