"""Model zoo behind one factory, :func:`create_model`."""

from ddkit.models import convnet as _convnet  # noqa: F401  (registers the ConvNet family)
from ddkit.models import series as _series  # noqa: F401  (registers conv1d, resnet1d)
from ddkit.models import zoo as _zoo  # noqa: F401  (registers MLP, LeNet, AlexNet, VGG, ResNet, ViT)
from ddkit.models.helpers import (
    build_network,
    predict,
    reinitializable,
    reinitialize,
    reset_module,
)
from ddkit.models.registry import (
    MODELS,
    ClassifierModel,
    check_model_input,
    create_model,
    has_batchnorm,
    register_model,
    set_inplace_activations,
)

__all__ = [
    "MODELS",
    "build_network",
    "ClassifierModel",
    "check_model_input",
    "create_model",
    "has_batchnorm",
    "predict",
    "register_model",
    "reinitializable",
    "reinitialize",
    "reset_module",
    "set_inplace_activations",
]
