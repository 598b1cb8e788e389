"""Phase diagrams: PNG heatmaps over (load, temperature) of a phase-grid zoo, written with matplotlib.

:func:`plot_heatmap` draws one column of the models table (mean over each cell's ``ok`` seeds; cells
where seeds diverged are hatched, since diverged models have no measurements to average; value labels
are black or white, whichever contrasts with their cell; empty cells say why);
:func:`plot_phase_map` draws the phase labels; :func:`plot_phase_diagrams` writes the standard set
(test accuracy, train loss, log10 Hessian trace, mode connectivity, CKA, heavy-tail alpha, phases) and
an overview figure with all of them side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import ListedColormap, to_rgba  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402

from generators.grid_table import cell_table, grid_axes, status_counts_table  # noqa: E402
from zoo.store import Zoo  # noqa: E402

PHASE_COLORS = {"I": "#d62728", "II": "#ff7f0e", "III": "#9467bd", "IV-A": "#1f77b4", "IV-B": "#2ca02c"}
UNLABELLED_COLOR = "#c7c7c7"


@dataclass(frozen=True)
class PanelSpec:
    """One heatmap of the standard set: a models-table column, how to transform it, how to show it."""

    column: str
    file: str
    title: str
    label: str
    cmap: str = "viridis"
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    note: str = ""  # a second title line: how to read the values


def _log10(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(values), np.nan)


#: How to read mode connectivity (Yang et al. 2021): negative values mean the loss rises between the seeds.
MC_NOTE = "mc < 0: a barrier between the seeds; mc >= 0: none"

STANDARD_PANELS: tuple[PanelSpec, ...] = (
    PanelSpec("test_acc", "test_acc.png", "final test accuracy", "test accuracy", "magma"),
    PanelSpec("train_loss", "train_loss.png", "final train loss", "train loss (cross-entropy)", "viridis_r"),
    PanelSpec("hessian_trace_train", "hessian_trace.png", "Hessian trace (train samples)",
              "log10 Hessian trace", "inferno", _log10),
    PanelSpec("mc_loss", "mode_connectivity.png", "mode connectivity (loss)", "mc (loss); < 0 = barrier", "coolwarm",
              note=MC_NOTE),
    PanelSpec("mc_error", "mode_connectivity_error.png", "mode connectivity (error)", "mc (error); < 0 = barrier",
              "coolwarm", note=MC_NOTE),
    PanelSpec("cka", "cka.png", "CKA similarity between seeds", "linear CKA", "cividis"),
    PanelSpec("alpha", "alpha.png", "heavy-tail exponent alpha (mean over layers)", "alpha", "plasma"),
)


def text_color(rgba: Sequence[float]) -> str:
    """``"black"`` or ``"white"``, whichever contrasts more with the colour ``rgba`` (WCAG relative
    luminance of the sRGB colour; black wins above 0.179, where both contrast ratios are equal)."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in tuple(rgba)[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 else "white"


def _axes_ticks(ax, load: dict, temp: dict) -> None:
    ax.set_xticks(range(len(temp["values"])), [str(v) for v in temp["values"]], rotation=45 if len(temp["values"]) > 6 else 0)
    ax.set_yticks(range(len(load["values"])), [str(v) for v in load["values"]])
    ax.set_xlabel(f"{temp['param']} (temperature)")
    ax.set_ylabel(f"{load['param']} (load)")


def _mark_diverged(ax, diverged: np.ndarray, n_ok: np.ndarray, annotate: bool) -> bool:
    """Hatch the cells where some seeds diverged (their values are not in the cell's mean); returns
    whether any cell was marked."""
    marked = False
    for i, j in zip(*np.nonzero(diverged)):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="0.35", linewidth=0))
        if annotate and n_ok[i, j] == 0:
            ax.text(j, i + 0.3, "all diverged", ha="center", va="center", fontsize=7, color="black")
        marked = True
    return marked


def draw_heatmap(ax, values: np.ndarray, load: dict, temp: dict, title: str, label: str, cmap: str,
                 annotate: bool = True, diverged: np.ndarray | None = None, n_ok: np.ndarray | None = None,
                 nan_text: np.ndarray | None = None, note: str = "") -> None:
    """One heatmap ``values [n_load, n_temperature]`` on ``ax``. Value labels take the colour (black or
    white) that contrasts with their cell; NaN cells say why (``nan_text``, else "n/a"); cells with
    diverged seeds are hatched; ``note`` is a second title line."""
    centred = cmap in ("coolwarm", "RdBu", "RdBu_r", "bwr")
    finite = values[np.isfinite(values)]
    kwargs = {}
    if centred and finite.size:
        lim = float(np.abs(finite).max()) or 1.0
        kwargs = {"vmin": -lim, "vmax": lim}
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, origin="lower", aspect="auto", **kwargs)
    _axes_ticks(ax, load, temp)
    if annotate and values.size <= 144:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                v = values[i, j]
                if not np.isfinite(v):  # masked: the axes' white background shows
                    why = nan_text[i, j] if nan_text is not None and nan_text[i, j] else "n/a"
                    ax.text(j, i, why, ha="center", va="center", fontsize=6 if len(why) > 8 else 7, color="black",
                            wrap=True)
                    continue
                ax.text(j, i, f"{v:.2g}" if abs(v) < 0.01 or abs(v) >= 100 else f"{v:.2f}", ha="center",
                        va="center", fontsize=7, color=text_color(im.cmap(im.norm(v))))
    plt.colorbar(im, ax=ax, label=label)
    if note:
        title += f"\n{note}"
    if diverged is not None and _mark_diverged(ax, diverged, n_ok if n_ok is not None else np.ones_like(diverged),
                                                annotate):
        title += f"\nhatched: {int(diverged.sum())} diverged models, not in the means"
    ax.set_title(title, fontsize=10)


def nan_reasons(z: Zoo, column: str, models: pd.DataFrame | None = None) -> np.ndarray:
    """``[n_load, n_temperature]`` object array: why a cell of ``column`` has no value (None where it has
    one): no ok model (all diverged, failed or pending), not computed, or for ``alpha`` the most common
    reason its ok models' weight matrices got no fit (``landscape/alpha_reason``)."""
    load, temp = grid_axes(z)
    models = z.models if models is None else models
    values = cell_table(z, column, models)
    n_ok, n_div = status_counts_table(z, "ok", models), status_counts_table(z, "diverged", models)
    out = np.full(values.shape, None, dtype=object)
    codes = None
    if column == "alpha" and "alpha_reason" in z.landscape_names:
        codes = z.landscape("alpha_reason")
        names = list(z.landscape_settings("alpha_reason")["settings"].get("nan_reasons", []))
    ok = models[models["status"] == "ok"]
    for i, j in zip(*np.nonzero(~np.isfinite(values))):
        if n_ok[i, j] == 0:
            out[i, j] = "all diverged" if n_div[i, j] else "no ok model"
            continue
        out[i, j] = "not computed"
        if codes is None:
            continue
        ids = ok[(ok["grid_load_index"] == i) & (ok["grid_temperature_index"] == j)]["model_id"].to_numpy()
        found = [int(c) for c in codes[ids].ravel() if np.isfinite(c) and c > 0]
        if found:
            reason = max(set(found), key=found.count)
            text = names[reason] if reason < len(names) else f"code {reason}"
            out[i, j] = "no alpha:\n" + "\n".join(text.rsplit(" ", 1))  # "too few\neigenvalues"
    return out


def _phase_grid(z: Zoo, models: pd.DataFrame) -> np.ndarray:
    """``[n_load, n_temperature]`` object array of phase labels (None where unlabelled)."""
    load, temp = grid_axes(z)
    out = np.full((len(load["values"]), len(temp["values"])), None, dtype=object)
    if "phase" not in models.columns:
        return out
    for (li, ti), g in models.groupby(["grid_load_index", "grid_temperature_index"]):
        labels = [p for p in g["phase"] if isinstance(p, str)]
        if labels:
            out[int(li), int(ti)] = max(set(labels), key=labels.count)
    return out


def _agreement_grid(z: Zoo, models: pd.DataFrame) -> np.ndarray:
    """``[n_load, n_temperature]`` agreement of each cell with its phase's signature (NaN where none),
    from the stored rule's ``cells``."""
    load, temp = grid_axes(z)
    out = np.full((len(load["values"]), len(temp["values"])), np.nan)
    cells = {int(c["grid_cell"]): c.get("agreement") for c in z.meta.get("phases", {}).get("cells", [])}
    first = models.drop_duplicates("grid_cell")
    for cell, li, ti in zip(first["grid_cell"], first["grid_load_index"], first["grid_temperature_index"]):
        value = cells.get(int(cell))
        if value is not None:
            out[int(li), int(ti)] = float(value)
    return out


def draw_phase_map(ax, phases: np.ndarray, load: dict, temp: dict, title: str,
                   agreement: np.ndarray | None = None, annotate: bool = True) -> None:
    """The phase of every cell on ``ax``: one colour per phase, its label in the cell (black or white,
    whichever contrasts), ``*`` after it where the cell agrees with its phase's signature only in part
    (``agreement < 1``)."""
    names = list(PHASE_COLORS)
    codes = np.array([[names.index(p) if p in names else len(names) for p in row] for row in phases])
    colors = [*PHASE_COLORS.values(), UNLABELLED_COLOR]
    ax.imshow(codes, cmap=ListedColormap(colors), vmin=-0.5, vmax=len(names) + 0.5, origin="lower", aspect="auto")
    _axes_ticks(ax, load, temp)
    low = agreement is not None and bool((agreement < 1).any())
    if annotate and phases.size <= 400:
        size = 12 if max(phases.shape) <= 8 else 9
        for i in range(phases.shape[0]):
            for j in range(phases.shape[1]):
                text = phases[i, j] or "-"
                if phases[i, j] and agreement is not None and agreement[i, j] < 1:
                    text += "*"
                ax.text(j, i, text, ha="center", va="center", fontsize=size, fontweight="bold",
                        color=text_color(to_rgba(colors[codes[i, j]])))
    present = [n for n in names if (phases == n).any()]
    handles = [Patch(color=PHASE_COLORS[n], label=f"phase {n}") for n in present]
    if (phases == None).any():  # noqa: E711 - elementwise on an object array
        handles.append(Patch(color=UNLABELLED_COLOR, label="unlabelled"))
    if low and annotate:
        handles.append(Patch(color="none", label="* agreement < 1"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    ax.set_title(title, fontsize=10)


def _figure(load: dict, temp: dict) -> tuple[plt.Figure, plt.Axes]:
    return plt.subplots(figsize=(0.8 * len(temp["values"]) + 3.5, 0.6 * len(load["values"]) + 2.2))


def _save(fig: plt.Figure, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out)  # a half-written PNG never takes the final name
    return out


def plot_heatmap(z: Zoo, column: str, out: str | Path, title: str | None = None, cmap: str = "viridis",
                 transform: Callable[[np.ndarray], np.ndarray] | None = None, label: str | None = None,
                 models: pd.DataFrame | None = None) -> Path:
    """Heatmap of ``column`` (mean over each cell's ``ok`` seeds; cells with diverged seeds hatched), load
    on y, temperature on x, written to ``out`` (PNG)."""
    return _save(heatmap_figure(z, column, title, cmap, transform, label, models), out)


def heatmap_figure(z: Zoo, column: str, title: str | None = None, cmap: str = "viridis",
                   transform: Callable[[np.ndarray], np.ndarray] | None = None, label: str | None = None,
                   models: pd.DataFrame | None = None) -> plt.Figure:
    """The figure :func:`plot_heatmap` saves (one axes: the heatmap; then its colour bar)."""
    load, temp = grid_axes(z)
    models = z.models if models is None else models
    values = cell_table(z, column, models)
    if transform is not None:
        values = transform(values)
    fig, ax = _figure(load, temp)
    note = next((p.note for p in STANDARD_PANELS if p.column == column), "")
    draw_heatmap(ax, values, load, temp, title or f"{column} over the phase grid ({z.meta.get('name', '')})",
                 label or column, cmap, diverged=status_counts_table(z, "diverged", models),
                 n_ok=status_counts_table(z, "ok", models), nan_text=nan_reasons(z, column, models), note=note)
    return fig


def plot_phase_map(z: Zoo, out: str | Path, models: pd.DataFrame | None = None) -> Path:
    """The phase label of every cell (colours per phase, unlabelled cells grey, ``*`` where agreement < 1)."""
    return _save(phase_map_figure(z, models), out)


def phase_map_figure(z: Zoo, models: pd.DataFrame | None = None) -> plt.Figure:
    """The figure :func:`plot_phase_map` saves."""
    load, temp = grid_axes(z)
    models = z.models if models is None else models
    fig, ax = _figure(load, temp)
    rule = z.meta.get("phases", {})
    draw_phase_map(ax, _phase_grid(z, models), load, temp,
                   f"phases (rule {rule.get('name', '?')} v{rule.get('version', '?')})",
                   agreement=_agreement_grid(z, models))
    return fig


def plot_phase_diagrams(z: Zoo, out_dir: str | Path, panels: Sequence[PanelSpec] = STANDARD_PANELS
                        ) -> tuple[list[Path], dict[str, str]]:
    """Write one PNG per available panel, the phase map (if labelled) and ``phase_diagram.png`` with all of
    them. Returns the written paths and ``{panel: reason}`` for the panels skipped."""
    out_dir = Path(out_dir)
    load, temp = grid_axes(z)
    models = z.models
    written, skipped, drawn = [], {}, []
    for panel in panels:
        if panel.column not in models.columns:
            skipped[panel.column] = "not computed (run 'weightzoo metrics')" if panel.column != "test_acc" else "missing"
            continue
        values = cell_table(z, panel.column, models)
        values = panel.transform(values) if panel.transform else values
        if not np.isfinite(values).any():
            skipped[panel.column] = "no finite value in any cell"
            continue
        written.append(plot_heatmap(z, panel.column, out_dir / panel.file, title=panel.title, cmap=panel.cmap,
                                    transform=panel.transform, label=panel.label, models=models))
        drawn.append((panel, values))
    phases = _phase_grid(z, models) if "phase" in models.columns else None
    if phases is not None:
        written.append(plot_phase_map(z, out_dir / "phases.png", models))
    else:
        skipped["phase"] = "no phase labels (run 'weightzoo phases')"
    n = len(drawn) + (phases is not None)
    if n:
        cols = min(n, 4)
        rows = -(-n // cols)
        w, h = 0.7 * len(temp["values"]) + 3.2, 0.5 * len(load["values"]) + 2.4
        fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
        diverged, n_ok = status_counts_table(z, "diverged", models), status_counts_table(z, "ok", models)
        for ax, (panel, values) in zip(axes.flat, drawn):
            draw_heatmap(ax, values, load, temp, panel.title, panel.label, panel.cmap, annotate=False,
                         diverged=diverged, n_ok=n_ok, note=panel.note)
        if phases is not None:
            draw_phase_map(axes.flat[len(drawn)], phases, load, temp, "phases", agreement=_agreement_grid(z, models))
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(f"phase diagram of {z.meta.get('name', z.path)}")
        written.append(_save(fig, out_dir / "phase_diagram.png"))
    return written, skipped
