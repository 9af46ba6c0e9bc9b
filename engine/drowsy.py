"""DrowsyNet (DESIGN.md): inference-stage dropout of conv outputs, with masks that skip work.

This module binds the masks' layer and image ids to the plan and reads their knobs; the
masked kernels, which make each image's mask, are in :mod:`aipnet.kernels.drowsy`, whose
docstring states the generator's exact integer formula
(splitmix64 over seed, image, layer and unit), the unit numbering of each granularity and
the tile shape, so that the C runtime can reproduce every mask bit for bit.

- Layer index: a Conv's position among the graph's Conv nodes (0-based, graph order).
- Image id: ``image_offset`` (a ``Session.run`` keyword) + position in the batch; with
  ``drowsy_fixed_mask`` every image uses id 0.
- Dropped outputs are 0, also after a fused activation; survivors are scaled by
  ``1/(1-p)`` when ``drowsy_rescale`` is set.
"""

from __future__ import annotations

from typing import Any

from aipnet.kernels.drowsy import drop_threshold

from .graph import Graph


def conv_layer_indices(graph: Graph) -> dict[int, int]:
    """id(node) -> index among the graph's Conv nodes, in graph order."""
    out: dict[int, int] = {}
    for node in graph.nodes:
        if node.op == "Conv":
            out[id(node)] = len(out)
    return out


def bind(plan: Any, graph: Graph, image_offset: int) -> None:
    """Tell every Conv step of ``plan`` its layer index and the first image id of this run."""
    index = conv_layer_indices(graph)
    for st in plan.steps:
        if st.node.op == "Conv" and id(st.node) in index:
            st.impl.drowsy_layer = index[id(st.node)]
            st.impl.drowsy_image = int(image_offset)


def mask_knobs(knobs: Any) -> tuple[int, int, int]:
    """(seed, fixed, threshold) of a conv's masks. The ``mask`` argument of
    :func:`aipnet.kernels.drowsy.conv2d_drowsy` is (seed, first image id, fixed, layer,
    threshold): image n of the batch gets id 0 with a fixed mask, else first + n."""
    return int(knobs.seed), int(bool(knobs.drowsy_fixed_mask)), drop_threshold(knobs.drowsy)


def scale(knobs: Any) -> float:
    """The factor applied to survivors: 1/(1-p) with ``drowsy_rescale``, else 1."""
    return 1.0 / (1.0 - knobs.drowsy) if knobs.drowsy_rescale else 1.0
