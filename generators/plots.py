"""Phase-diagram heatmaps over (load, temperature), written as PNG with matplotlib."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from zoo.store import Zoo  # noqa: E402

from generators.grid_table import cell_table, grid_axes  # noqa: E402


def plot_heatmap(z: Zoo, column: str, out: str | Path, title: str | None = None, cmap: str = "viridis") -> Path:
    """Heatmap of ``column`` (mean over seeds) with load on the y axis and temperature on the x axis."""
    load, temp = grid_axes(z)
    values = cell_table(z, column)
    fig, ax = plt.subplots(figsize=(1.2 * len(temp["values"]) + 2.5, 0.9 * len(load["values"]) + 1.8))
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, origin="lower", aspect="auto")
    ax.set_xticks(range(len(temp["values"])), [str(v) for v in temp["values"]])
    ax.set_yticks(range(len(load["values"])), [str(v) for v in load["values"]])
    ax.set_xlabel(f"{temp['param']} (temperature)")
    ax.set_ylabel(f"{load['param']} (load)")
    finite = values[np.isfinite(values)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = "n/a" if not np.isfinite(values[i, j]) else f"{values[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(values[i, j]) and values[i, j] < mid else "black")
    fig.colorbar(im, ax=ax, label=column)
    ax.set_title(title or f"{column} over the phase grid ({z.meta.get('name', '')})")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
