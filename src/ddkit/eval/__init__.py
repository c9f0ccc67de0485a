"""Evaluation: protocols as data, vectorised training of fresh networks, reports."""

from ddkit.eval.evaluate import (
    EvalReport,
    ModelResult,
    Report,
    RunPlan,
    evaluate,
    evaluate_with_teacher,
    run_seeds,
    training_data,
)
from ddkit.eval.protocol import PROTOCOLS, EvalProtocol, get_protocol, register_protocol
from ddkit.eval.train import (
    TrainRecipe,
    TrainStats,
    accuracy,
    build_networks,
    sgd_train,
    train_networks,
)

__all__ = [
    "PROTOCOLS",
    "EvalProtocol",
    "EvalReport",
    "ModelResult",
    "Report",
    "RunPlan",
    "TrainRecipe",
    "TrainStats",
    "accuracy",
    "build_networks",
    "evaluate",
    "evaluate_with_teacher",  # deprecated: evaluate(..., teacher=...)
    "get_protocol",
    "register_protocol",
    "run_seeds",
    "sgd_train",
    "train_networks",
    "training_data",
]
