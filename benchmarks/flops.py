"""FLOP counting from layer shapes: :mod:`salnet.models.flops` (the launcher's GPU-hour estimate uses it too)."""

from salnet.models.flops import LayerCall, LayerFlops

__all__ = ["LayerCall", "LayerFlops"]
