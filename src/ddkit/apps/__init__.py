"""Applications of distilled data, measured by their standard protocols, on top of the public
API (any registered method or selector can be plugged in): class-incremental continual
learning, architecture search with proxy sets, federated learning on non-IID clients, and
condensed validation sets for hyperparameter search (HCDC)."""

from ddkit.apps.continual import (
    ContinualResult,
    ContinualSettings,
    class_orders,
    class_subset,
    continual_learning,
)
from ddkit.apps.federated import dirichlet_split, fedavg, one_shot
from ddkit.apps.hcdc import (
    HyperparameterSearch,
    calibrated_search,
    condense_validation,
    hyperparameter_grid,
)
from ddkit.apps.nas import architecture_search, architecture_space

__all__ = [
    "ContinualResult",
    "ContinualSettings",
    "HyperparameterSearch",
    "architecture_search",
    "architecture_space",
    "calibrated_search",
    "class_orders",
    "class_subset",
    "condense_validation",
    "continual_learning",
    "dirichlet_split",
    "fedavg",
    "hyperparameter_grid",
    "one_shot",
]
