"""Line plots as PNG files (matplotlib, Agg backend: no display needed), written atomically.

A figure is one or more panels side by side; each panel draws several :class:`Series`. Training
curves are noisy, so a panel may smooth them: with ``smooth = w > 1`` each series is drawn faint
as it is and solid as its centred moving average over w points.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from arpo.io import atomic_write_bytes  # noqa: E402


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[float]
    y: Sequence[float]
    linestyle: str = "-"
    smooth: bool = True
    """Whether the panel's smoothing applies (False: sparse points such as validation, drawn as they are)."""


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    series: Sequence[Series]
    xlabel: str = "step"
    smooth: int = 1
    marker_x: float | None = None
    """Draw a vertical line here (e.g. the tool result in an entropy profile)."""


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Centred mean over ``window`` points (fewer at the ends), so a smoothed curve does not lag."""
    half = window // 2
    prefix = [0.0]
    for value in values:
        prefix.append(prefix[-1] + value)
    out = []
    for i in range(len(values)):
        low, high = max(0, i - half), min(len(values), i + window - half)
        out.append((prefix[high] - prefix[low]) / (high - low))
    return out


def plain_y_axis(ax: Any, values: Sequence[float]) -> None:
    """Tick labels without matplotlib's offset ("1e-16+3e-4" for a constant learning rate): a
    constant positive series gets the range [0, 1.5·value]."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and max(finite) == min(finite) and finite[0] > 0:
        ax.set_ylim(0, 1.5 * finite[0])
    ax.ticklabel_format(axis="y", useOffset=False)


def figure(panels: Sequence[Panel], path: str | Path, title: str | None = None) -> Path:
    """Draw ``panels`` side by side and write the PNG to ``path``."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    try:
        for ax, panel in zip(axes[0], panels, strict=True):
            for index, series in enumerate(panel.series):
                color = f"C{index}"
                if series.smooth and panel.smooth > 1 and len(series.y) > panel.smooth:
                    ax.plot(series.x, series.y, color=color, alpha=0.25, linestyle=series.linestyle)
                    ax.plot(
                        series.x,
                        moving_average(series.y, panel.smooth),
                        color=color,
                        linestyle=series.linestyle,
                        label=series.label,
                    )
                else:
                    ax.plot(
                        series.x,
                        series.y,
                        color=color,
                        linestyle=series.linestyle,
                        marker="." if len(series.y) < 60 else None,
                        label=series.label,
                    )
            if panel.marker_x is not None:
                ax.axvline(panel.marker_x, color="grey", linestyle=":", linewidth=1)
            plain_y_axis(ax, [y for series in panel.series for y in series.y])
            ax.set_title(panel.title, fontsize=10)
            ax.set_xlabel(panel.xlabel)
            ax.set_ylabel(panel.ylabel)
            ax.grid(alpha=0.3)
            if panel.series:
                ax.legend(fontsize=8)
        if title:
            fig.suptitle(title, fontsize=11)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def line_plot(
    series: Sequence[Series],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    marker_x: float | None = None,
) -> Path:
    """One panel of ``series``, written to ``path``."""
    return figure([Panel(title, ylabel, series, xlabel=xlabel, marker_x=marker_x)], path)
