"""Evaluation: protocols as data, vectorised training of fresh networks, reports."""

from ddkit.eval.evaluate import EvalReport, ModelResult, evaluate, run_seeds
from ddkit.eval.protocol import PROTOCOLS, EvalProtocol, get_protocol, register_protocol
from ddkit.eval.soft import evaluate_with_teacher  # registers the soft / teacher-kd protocols
from ddkit.eval.train import accuracy, build_networks, train_networks

__all__ = [
    "PROTOCOLS",
    "EvalProtocol",
    "EvalReport",
    "ModelResult",
    "accuracy",
    "build_networks",
    "evaluate",
    "evaluate_with_teacher",
    "get_protocol",
    "register_protocol",
    "run_seeds",
    "train_networks",
]
