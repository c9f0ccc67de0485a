"""Functional building blocks: matching distances and per-class gradients (``torch.func``)."""

from ddkit.functional.matching import (
    METRICS,
    class_gradients,
    class_gradients_loop,
    gradient_distance,
    gradient_matching_loss,
    layer_distance,
    matched_parameter_names,
)

__all__ = [
    "METRICS",
    "class_gradients",
    "class_gradients_loop",
    "gradient_distance",
    "gradient_matching_loss",
    "layer_distance",
    "matched_parameter_names",
]
