"""Layers of a parameter layout as matrices: the one explicit layout every single-layer learner reads.

A *layer* is the set of layout entries that share a ``layer`` index and hold a weight of two or more
dimensions (``layers.1`` = ``layers.1.weight`` and ``layers.1.bias``); its name is the weight's module
prefix. :func:`layer_matrix` turns a layer of a batch of flat weight vectors into a matrix per model:

* a dense weight ``[d_out, d_in]`` stays as it is;
* a convolution weight ``[d_out, c_in, *k]`` becomes ``[d_out, c_in * prod(k)]`` by a row-major reshape:
  column ``c * prod(k) + t`` holds input channel ``c`` at kernel tap ``t`` (taps of one channel are
  contiguous). The output axis stays first, so permuting the layer's output units (channels) permutes
  rows, and permuting its input channels permutes whole blocks of ``prod(k)`` columns: the reshape keeps
  both permutation symmetries visible instead of mixing channels and taps;
* the bias ``[d_out]`` (when the layer has one and ``bias=True``) becomes the last column, so the
  matrix is the layer's affine map ``[W | b]`` ``[d_out, d_in' + 1]``;
* a parameter name (``layers.1.weight``) instead of a layer name selects that one tensor (a 1-D
  tensor gives ``[d, 1]``).

Hidden layers are those whose output units form a permutation group of the layout (they feed another
layer); the output layer is the last one. Pure tensor code over :class:`kernels.ParamLayout`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import ParamEntry, ParamLayout
from zoo import ZooError


@dataclass(frozen=True)
class LayerRef:
    """A resolved layer: its ``name``, its ``weight`` entry and its ``bias`` entry (None when absent or not
    asked for). ``shape`` is the matrix shape ``(d_out, columns)`` of :func:`layer_matrix`."""

    name: str
    weight: ParamEntry
    bias: ParamEntry | None

    @property
    def shape(self) -> tuple[int, int]:
        d_out = self.weight.shape[0]
        cols = self.weight.numel // d_out
        return d_out, cols + (1 if self.bias is not None else 0)

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1]


def _prefix(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else name


def layer_refs(layout: ParamLayout) -> list[LayerRef]:
    """Every layer of ``layout`` with a weight of two or more dimensions, in layer order, each with the
    1-D entry of the same layer whose length is the weight's ``d_out`` as its bias."""
    refs = []
    for layer in sorted({e.layer for e in layout}):
        entries = [e for e in layout if e.layer == layer]
        for w in (e for e in entries if len(e.shape) >= 2):
            bias = next((b for b in entries if len(b.shape) == 1 and b.shape[0] == w.shape[0]
                         and _prefix(b.name) == _prefix(w.name)), None)
            refs.append(LayerRef(_prefix(w.name), w, bias))
    return refs


def layer_names(layout: ParamLayout) -> list[str]:
    """Names of every layer (module prefixes such as ``layers.0``, ``convs.1``, ``head``) in order."""
    return [r.name for r in layer_refs(layout)]


def output_layer_name(layout: ParamLayout) -> str:
    """The last layer (the classifier: its rows are the classes)."""
    names = layer_names(layout)
    if not names:
        raise ZooError("the layout has no layer with a weight matrix")
    return names[-1]


def hidden_layer_names(layout: ParamLayout) -> list[str]:
    """Layers whose output units are a permutation group (they feed another layer); without permutation
    groups in the layout, every layer but the last."""
    refs = layer_refs(layout)
    if layout.permutable:
        return [r.name for r in refs if any(p.axis == 0 for p in r.weight.perm)]
    return [r.name for r in refs[:-1]]


def resolve_layer(layout: ParamLayout, name: str, bias: bool = True) -> LayerRef:
    """The :class:`LayerRef` of a layer name (weight and bias) or of one parameter name.

    Raises:
        ZooError: no such layer or parameter; the message lists the layers and the parameter names.
    """
    for ref in layer_refs(layout):
        if ref.name == name:
            return LayerRef(ref.name, ref.weight, ref.bias if bias else None)
    for e in layout:
        if e.name == name:
            if len(e.shape) == 0:
                break
            return LayerRef(e.name, e if len(e.shape) >= 2 else ParamEntry(e.name, e.offset, (e.shape[0], 1),
                                                                            e.layer, e.perm), None)
    raise ZooError(f"no layer {name!r}; the layers are {layer_names(layout)} "
                   f"(or one parameter tensor: {layout.names})")


def layer_matrix(flat: torch.Tensor, ref: LayerRef) -> torch.Tensor:
    """``[B, d_out, columns]`` matrices of layer ``ref`` from flat weights ``flat [B, n_params]`` (same
    dtype; a copy). Column layout: see the module docstring."""
    w = ref.weight
    d_out = w.shape[0]
    mat = flat[:, w.offset:w.offset + w.numel].reshape(flat.shape[0], d_out, w.numel // d_out)
    if ref.bias is None:
        return mat.clone()
    b = flat[:, ref.bias.offset:ref.bias.offset + ref.bias.numel].reshape(flat.shape[0], d_out, 1)
    return torch.cat([mat, b], dim=2)
