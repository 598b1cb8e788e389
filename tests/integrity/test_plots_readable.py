"""Item 15: heatmap labels contrast with their cell's colour; phases.png labels are readable and carry the
'*' of low agreement; alpha cells without a value say why; mode-connectivity panels say that mc < 0
means a barrier."""

import shutil

import numpy as np
import pytest
from matplotlib.colors import to_rgba

import zoo
from generators.landscape import compute_landscape
from generators.plots import heatmap_figure, phase_map_figure, plot_phase_diagrams


def _luminance(color) -> float:
    def lin(c):
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in to_rgba(color)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a, b) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


@pytest.fixture(scope="module")
def labelled(tiny_zoo_path, tmp_path_factory):
    """The tiny zoo with alpha computed, a mode-connectivity column and phase labels of two agreements."""
    path = tmp_path_factory.mktemp("plots") / "z.zarr"
    shutil.copytree(tiny_zoo_path, path)
    z = zoo.open(path, mode="r+")
    compute_landscape(z, {"metrics": ["alpha"]}, progress=False)
    z.declare_landscape("mc_loss", {"test": True}, description="mode connectivity")
    z.write_landscape("mc_loss", list(range(z.n_models)), np.linspace(-0.5, 0.3, z.n_models))
    cells = z.models.drop_duplicates("grid_cell")["grid_cell"].tolist()
    agreement = {c: (0.75 if k % 2 else 1.0) for k, c in enumerate(cells)}
    z.write_phases(["I" if c % 2 else "II" for c in z.models["grid_cell"]],
                   {"name": "test", "version": 1, "labels": ["I", "II", "III"],
                    "cells": [{"grid_cell": int(c), "phase": "I" if c % 2 else "II", "agreement": a}
                              for c, a in agreement.items()]})
    return zoo.open(path), agreement


def _cell_texts(ax):
    image = ax.images[0]
    data = image.get_array()
    for t in ax.texts:
        j, i = (int(round(v)) for v in t.get_position())
        yield t, (None if np.ma.is_masked(data[i, j]) else image.cmap(image.norm(data[i, j])))


@pytest.mark.parametrize("column,cmap", [("train_loss", "viridis_r"), ("test_acc", "magma"), ("mc_loss", "coolwarm")])
def test_value_labels_contrast_with_their_cell(labelled, column, cmap):
    z, _ = labelled
    fig = heatmap_figure(z, column, cmap=cmap)
    labels = [(t, c) for t, c in _cell_texts(fig.axes[0]) if c is not None]
    assert labels
    for text, cell in labels:  # WCAG's 3:1 for large or bold text; the old rule put black on the darkest colour
        assert _contrast(text.get_color(), cell) >= 3, (text.get_text(), text.get_color(), cell)


def test_mode_connectivity_panels_say_what_negative_means(labelled):
    z, _ = labelled
    assert "mc < 0: a barrier" in heatmap_figure(z, "mc_loss", cmap="coolwarm").axes[0].get_title()


def test_alpha_cells_without_a_value_say_why(labelled):
    z, _ = labelled
    fig = heatmap_figure(z, "alpha", cmap="plasma")
    empty = [t.get_text() for t, cell in _cell_texts(fig.axes[0]) if cell is None]
    n_width4_cells = z.models.query("width == 4")["grid_cell"].nunique()
    assert len(empty) == n_width4_cells and all("too few" in t and "eigenvalues" in t for t in empty)


def test_phase_labels_are_readable_and_mark_low_agreement(labelled, tmp_path):
    z, agreement = labelled
    fig = phase_map_figure(z)
    ax = fig.axes[0]
    first = z.models.drop_duplicates("grid_cell").set_index(["grid_load_index", "grid_temperature_index"])
    for text in ax.texts:
        j, i = (int(round(v)) for v in text.get_position())
        cell = int(first.loc[(i, j), "grid_cell"])
        assert text.get_text().endswith("*") == (agreement[cell] < 1)
        assert text.get_fontsize() >= 10
        face = ax.images[0].cmap(ax.images[0].norm(ax.images[0].get_array()[i, j]))
        assert _contrast(text.get_color(), face) >= 3
    assert any("agreement < 1" in t.get_text() for t in ax.get_legend().get_texts())
    written, _ = plot_phase_diagrams(z, tmp_path)
    assert {p.name for p in written} >= {"alpha.png", "phases.png", "mode_connectivity.png", "phase_diagram.png"}
