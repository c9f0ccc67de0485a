"""Hyperparameter-calibrated condensation of a *validation* set (HCDC).

Ding, Xu, Rabbani, Liu, Gravelle, Ranadive, Tuan & Huang, "Calibrated Dataset Condensation for
Faster Hyperparameter Search" (2024, arXiv:2405.17535). A hyperparameter search trains one
network per setting and ranks the settings by their validation loss. HCDC condenses the
validation set so that this ranking survives: the validation loss's *hypergradients* on the
condensed set are matched to those on the real one, because the difference of the validation
loss between two settings is the integral of its hypergradient along a path joining them.

With the networks trained to a minimum of the training loss, the implicit function theorem
gives the hypergradient with respect to continuous hyperparameters ``lambda`` (Lorraine, Vicol &
Duvenaud, AISTATS 2020)::

    dL_val/dlambda = - (d^2 L_train / dlambda dtheta)^T  H^-1  dL_val/dtheta

where ``H`` is the training loss's Hessian. Only the last factor depends on the validation set,
so for each trained network the vectors ``u_i = H^-1 d^2L_train/dlambda_i dtheta`` are computed
once (a truncated Neumann series of Hessian-vector products, as the paper does) and the
hypergradient of a candidate set ``S`` is ``-U grad_theta L_S``: the condensation loss is the
relative squared distance between that and the real validation set's, summed over the grid's
networks, minimised over the images of ``S`` (double backward, as in gradient matching).

The hyperparameters differentiated are per-module weight decays (log scale): the training loss
has ``sum_i (wd_i / 2) ||theta_i||^2`` over the modules ``i`` that own parameters, so
``d^2 L_train / dlog wd_i dtheta = wd_i theta_i`` on module ``i``'s parameters, zero elsewhere. The grid searched is learning rate x weight decay.

Deviations from the paper, on purpose:

* the hyperparameter space is per-module weight decay at the grid's trained networks (the paper
  also relaxes discrete architecture choices into continuous ones); the learning rate has no
  hypergradient at a minimum, so its effect is matched only through the networks it produced;
* the networks are trained once per setting on the real training split (the paper also pairs
  HCDC with a condensed training set) and the Neumann step is ``1 / (1.1 |lambda_max|)``, with
  ``lambda_max`` from a few power iterations instead of a tuned constant;
* the rankings are checked on networks retrained from another seed, never on the networks the
  set was condensed with, and the top pick's accuracy is measured on the test split only after
  the ranking is fixed.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from ddkit.apps.base import App, register_app
from ddkit.apps.nas import rank_agreement
from ddkit.commands import COUNT, FRACTION, Limit, number_list
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.protocol import get_protocol
from ddkit.eval.train import train_networks
from ddkit.methods import method_names
from ddkit.models import build_network


@dataclass(frozen=True)
class Setting:
    """One point of the hyperparameter grid."""

    lr: float
    weight_decay: float

    @property
    def name(self) -> str:
        return f"lr={self.lr:g},wd={self.weight_decay:g}"


def hyperparameter_grid(
    lrs: Sequence[float] = (0.003, 0.01, 0.03, 0.1),
    weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2, 3e-2),
) -> list[Setting]:
    """The learning rate x weight decay grid searched."""
    return [Setting(lr, wd) for lr in lrs for wd in weight_decays]


#: The recipe :func:`train_grid` trains under, its lr and weight decay the grid's (resolved once,
#: at import).
GRID_PROTOCOL = get_protocol("dc")


def train_grid(
    train: ImageDataset, grid: Sequence[Setting], *, model: str, epochs: int, seed: int
) -> dict[str, nn.Module]:
    """One ``model`` per setting, trained from seed ``seed`` on ``train`` with the dc protocol's
    recipe (SGD, momentum 0.9, batch 256, step decay) at the setting's lr and weight decay."""
    base = GRID_PROTOCOL.with_(epochs=epochs, runs=1, models=(model,), augment=None)
    nets = {}
    for s in grid:
        p = base.with_(lr=s.lr, weight_decay=s.weight_decay)
        nets[s.name] = train_networks(
            model, train.spec, train.images, train.labels, p, [seed], lr=s.lr
        ).models[0]
    return nets


class FlatNetwork:
    """A network seen as a function of one flat parameter vector (for Hessian products)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net.eval()
        named = [(k, p.detach()) for k, p in net.named_parameters()]
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = torch.cat([p.flatten() for _, p in named])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(flat, self.sizes)
        return {k: v.view(s) for k, v, s in zip(self.names, parts, self.shapes, strict=True)}

    def logits(self, flat: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, self.unflatten(flat), (images,))

    def module_masks(self) -> torch.Tensor:
        """``(T, P)``: row ``i`` is 1 on the parameters of the ``i``-th module that has any
        (a convolution's weight and bias share a row; a normalisation layer has its own)."""
        modules = list(dict.fromkeys(k.rpartition(".")[0] for k in self.names))
        masks = torch.zeros(len(modules), len(self.theta))
        start = 0
        for k, n in zip(self.names, self.sizes, strict=True):
            masks[modules.index(k.rpartition(".")[0]), start : start + n] = 1.0
            start += n
        return masks


def inverse_hessian_products(
    flat: FlatNetwork,
    images: torch.Tensor,
    labels: torch.Tensor,
    weight_decay: float,
    vectors: torch.Tensor,
    *,
    terms: int = 10,
    power_iterations: int = 10,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``H^-1 v`` for each row ``v`` of ``vectors`` ``(R, P)``, with ``H`` the Hessian of the
    training loss ``CE(images, labels) + wd/2 ||theta||^2`` at the network's parameters: the
    Neumann series ``alpha sum_{j<terms} (I - alpha H)^j v`` (Lorraine et al. 2020), all rows at
    once, with ``alpha = 1 / (1.1 |lambda_max|)`` from power iteration."""
    theta = flat.theta

    def train_loss(t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(flat.logits(t, images), labels) + 0.5 * weight_decay * t.dot(t)

    gradient = grad(train_loss)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(gradient, (theta,), (v,))[1]

    v = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
    top = 1.0
    for _ in range(power_iterations):
        hv = hvp(v / v.norm())
        top = float(hv.norm())
        v = hv
    alpha = 1.0 / (1.1 * max(top, 1e-12))
    batched = vmap(hvp)
    term = vectors.clone()
    total = vectors.clone()
    for _ in range(terms - 1):
        term = term - alpha * batched(term)
        total = total + term
    return alpha * total


@dataclass
class Calibration:
    """What matching needs of one trained network: ``u`` ``(T, P)`` (rows ``H^-1 d^2L/dlog
    wd_i dtheta``, one per module) and the real validation set's hypergradient ``target`` ``(T,)``."""

    flat: FlatNetwork
    u: torch.Tensor
    target: torch.Tensor


def hypergradient(cal: Calibration, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``dL_val/dlog wd_i`` for the validation set ``(images, labels)``, differentiable with
    respect to ``images``."""
    theta = cal.flat.theta.requires_grad_(True)
    loss = F.cross_entropy(cal.flat.logits(theta, images), labels)
    (g,) = torch.autograd.grad(loss, theta, create_graph=True)
    theta.requires_grad_(False)
    return -(cal.u @ g)


def calibrate(
    net: nn.Module,
    train: ImageDataset,
    val: ImageDataset,
    weight_decay: float,
    *,
    terms: int = 10,
    hessian_batch: int = 256,
    generator: torch.Generator,
) -> Calibration:
    """The :class:`Calibration` of ``net`` (trained with ``weight_decay``): the Hessian on a
    seeded subsample of ``hessian_batch`` training images."""
    flat = FlatNetwork(net)
    rows = torch.randperm(len(train), generator=generator)[:hessian_batch]
    mixed = flat.module_masks() * (weight_decay * flat.theta)
    u = inverse_hessian_products(
        flat, train.images[rows], train.labels[rows], weight_decay, mixed,
        terms=terms, generator=generator,
    )  # fmt: skip
    cal = Calibration(flat, u, torch.zeros(len(u)))
    cal.target = hypergradient(cal, val.images, val.labels).detach()
    return cal


def condense_validation(
    val: ImageDataset,
    calibrations: Sequence[Calibration],
    ipc: int,
    *,
    iterations: int = 200,
    lr_img: float = 0.01,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> tuple[SyntheticSet, list[float]]:
    """HCDC: ``ipc`` images per class, initialised from seeded real validation images, moved
    with Adam to minimise ``sum_c ||h_c(S) - h_c(V)||^2 / ||h_c(V)||^2`` over the calibrated
    networks ``c``. Returns the set and the matching loss per iteration."""
    if iterations < 0:
        raise ConfigError(f"iterations must be >= 0, got {iterations}")
    g = torch.Generator().manual_seed(seed)
    index = val.sample_per_class(ipc, g).flatten()
    images = val.images[index].clone().requires_grad_(True)
    labels = val.labels[index].clone()
    opt = torch.optim.Adam([images], lr=lr_img)
    history = []
    for it in range(iterations):
        loss = sum(
            (hypergradient(c, images, labels) - c.target).pow(2).sum()
            / c.target.pow(2).sum().clamp_min(1e-12)
            for c in calibrations
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if log and (it + 1) % max(1, iterations // 5) == 0:
            log(f"  hcdc {it + 1}/{iterations}: matching loss {history[-1]:.4f}")
    syn = SyntheticSet(images.detach(), labels, val.spec)
    syn.meta.update({"method": "hcdc", "ipc": ipc, "iterations": iterations, "seed": seed})
    return syn, history


@torch.no_grad()
def validation_scores(
    nets: Mapping[str, nn.Module], images: torch.Tensor, labels: torch.Tensor
) -> dict[str, dict[str, float]]:
    """Per setting: the validation loss and accuracy of its network on ``(images, labels)``."""
    out = {}
    for name, net in nets.items():
        logits = net.eval()(images)
        out[name] = {
            "loss": float(F.cross_entropy(logits, labels)),
            "accuracy": float((logits.argmax(1) == labels).float().mean()),
        }
    return out


def _agreement(candidate: Mapping[str, dict], real: Mapping[str, dict]) -> dict[str, float]:
    by_loss = rank_agreement({k: v["loss"] for k, v in candidate.items()},
                             {k: v["loss"] for k, v in real.items()})  # fmt: skip
    by_acc = rank_agreement({k: v["accuracy"] for k, v in candidate.items()},
                            {k: v["accuracy"] for k, v in real.items()})  # fmt: skip
    nan_to_none = {k: (None if math.isnan(v) else v) for k, v in by_acc.items()}
    return {**by_loss, "spearman_accuracy": nan_to_none["spearman"],
            "kendall_accuracy": nan_to_none["kendall"]}  # fmt: skip


def check_validation(splits: DatasetSplits, ipc: int) -> None:
    """A one-line error unless ``splits`` has a validation split with ``ipc`` images per class."""
    if splits.val is None or len(splits.val) == 0:
        raise ConfigError("HCDC condenses a validation split: load the dataset with val_fraction")
    splits.val.check_ipc(ipc)


@dataclass(frozen=True)
class HyperparameterSearch:
    """The search whose ranking HCDC keeps: the ``grid`` of settings (``None`` or empty: the
    default :func:`hyperparameter_grid`), each trained as one ``model`` for ``epochs`` epochs
    (:func:`train_grid`). The epochs are checked here, in one line."""

    grid: Sequence[Setting] | None = None
    model: str = "convnet-w16"
    epochs: int = 50

    def __post_init__(self) -> None:
        COUNT.check("epochs", self.epochs)


def calibrated_search(
    splits: DatasetSplits,
    ipc: int,
    *,
    search: HyperparameterSearch = HyperparameterSearch(),  # noqa: B008  (frozen)
    baselines: Sequence[str] = ("random", "dm"),
    baseline_iterations: int | None = None,
    iterations: int = 200,
    terms: int = 10,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The HCDC application end to end (module docstring): train ``search``'s grid, condense the
    validation split to ``ipc`` images per class with HCDC (``iterations``, ``terms`` Neumann
    terms) and with each baseline method (applied to the validation split, with
    ``baseline_iterations``), then retrain the grid from another seed and compare each
    candidate's ranking of the settings with the real validation split's. Returns a
    JSON-ready dict."""
    from ddkit.methods import create_method

    model, epochs = search.model, search.epochs
    for name, value in (("ipc", ipc), ("terms", terms)):
        COUNT.check(name, value)
    check_validation(splits, ipc)
    build_network(model, splits.spec, seed)  # an unknown model fails before the grid trains
    grid = list(search.grid or hyperparameter_grid())
    val, k = splits.val, splits.train.spec.num_classes
    t0 = time.perf_counter()
    log(f"training {len(grid)} networks for calibration ({model}, {epochs} epochs)")
    nets = train_grid(splits.train, grid, model=model, epochs=epochs, seed=seed)
    g = torch.Generator().manual_seed(seed)
    cals = [calibrate(nets[s.name], splits.train, val, s.weight_decay, terms=terms, generator=g)
            for s in grid]  # fmt: skip
    hcdc, history = condense_validation(val, cals, ipc, iterations=iterations, seed=seed, log=log)
    condense_seconds = time.perf_counter() - t0
    candidates: dict[str, SyntheticSet] = {"hcdc": hcdc}
    seconds = {"hcdc": condense_seconds}
    for name in baselines:
        t = time.perf_counter()
        m = create_method(name, dataset=val.spec.name, ipc=ipc)
        candidates[name] = m.fit(val, ipc, iterations=baseline_iterations, seed=seed)
        seconds[name] = time.perf_counter() - t
    log(f"retraining the grid from seed {seed + 1} to check the rankings")
    t = time.perf_counter()
    fresh = train_grid(splits.train, grid, model=model, epochs=epochs, seed=seed + 1)
    search_train_seconds = time.perf_counter() - t
    t = time.perf_counter()
    real = validation_scores(fresh, val.images, val.labels)
    real_seconds = time.perf_counter() - t
    test = validation_scores(fresh, splits.test.images, splits.test.labels)
    rows = []
    for name, syn in candidates.items():
        t = time.perf_counter()
        scores = validation_scores(fresh, syn.images, syn.hard_labels)
        scoring = time.perf_counter() - t
        pick = min(scores, key=lambda s: (scores[s]["loss"], s))
        rows.append({
            "candidate": name, "num_images": len(syn), "scores": scores,
            **_agreement(scores, real), "pick": pick, "pick_test": test[pick]["accuracy"],
            "build_seconds": seconds[name], "scoring_seconds": scoring,
        })  # fmt: skip
    real_pick = min(real, key=lambda s: (real[s]["loss"], s))
    return {
        "grid": [s.name for s in grid],
        "model": model,
        "epochs": epochs,
        "ipc": ipc,
        "num_classes": k,
        "iterations": iterations,
        "neumann_terms": terms,
        "seed": seed,
        "real": {
            "num_images": len(val),
            "scores": real,
            "pick": real_pick,
            "pick_test": test[real_pick]["accuracy"],
            "scoring_seconds": real_seconds,
        },  # fmt: skip
        "candidates": rows,
        "matching_loss": history,
        "grid_training_seconds": search_train_seconds,
        "test": test,
    }


@register_app
class HcdcApp(App):
    """``ddkit app hcdc``."""

    name = "hcdc"
    help = "condensed validation sets that keep a hyperparameter grid's ranking (HCDC)"
    limits = {"ipc": COUNT, "baseline_iterations": Limit(0, integer=True), "epochs": COUNT,
              "iterations": COUNT, "terms": COUNT, "val_fraction": FRACTION,
              "lrs": Limit(0, open=True), "weight_decays": Limit(0, open=True)}  # fmt: skip

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        cls.add_shared(parser)
        parser.add_argument("--ipc", type=int, default=5, help="validation images per class kept")
        parser.add_argument(
            "--baselines", default="random,dm", help="methods applied to the val split"
        )
        parser.add_argument("--baseline-iterations", type=int, default=None)
        parser.add_argument(
            "--lrs", default="0.003,0.01,0.03,0.1", help="the grid's learning rates"
        )
        parser.add_argument("--weight-decays", default="0.0001,0.001,0.01,0.03",
                        help="the grid's weight decays")  # fmt: skip
        parser.add_argument("--model", default="convnet-w16")
        parser.add_argument(
            "--epochs", type=int, default=50, help="training epochs per grid network"
        )
        parser.add_argument("--iterations", type=int, default=200, help="HCDC iterations")
        parser.add_argument("--terms", type=int, default=10, help="Neumann series terms")
        parser.add_argument("--val-fraction", type=float, default=0.2)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from ddkit.claims import hold_output
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json
        from ddkit.plots import plot_hcdc

        baselines = method_names(args.baselines)
        grid = hyperparameter_grid(
            number_list(args.lrs, "--lrs", above=0),
            number_list(args.weight_decays, "--weight-decays", above=0),
        )
        search = HyperparameterSearch(grid, args.model, args.epochs)
        splits = load_dataset(
            args.dataset, root=args.root, val_fraction=args.val_fraction, seed=args.seed
        )
        check_validation(splits, args.ipc)
        build_network(args.model, splits.spec, args.seed)  # an unknown model fails here
        with hold_output(args, "output folder", "app hcdc") as out:
            result = calibrated_search(
                splits,
                args.ipc,
                search=search,
                baselines=baselines,
                baseline_iterations=args.baseline_iterations,
                iterations=args.iterations,
                terms=args.terms,
                seed=args.seed,
            )
            result["dataset"] = args.dataset
            atomic_write_json(out / "hcdc.json", result)
            plot_hcdc(result, out / "hcdc.png")
            real = result["real"]
            print(f"{'validation set':<16} {'images':>6} {'spearman':>9} {'kendall':>8} "
                  f"{'pick':>20} {'pick test %':>12}")  # fmt: skip
            print(f"{'real split':<16} {real['num_images']:>6} {1:>9.3f} {1:>8.3f} {real['pick']:>20} "
                  f"{100 * real['pick_test']:>12.2f}")  # fmt: skip
            for r in result["candidates"]:
                print(f"{r['candidate']:<16} {r['num_images']:>6} {r['spearman']:>9.3f} "
                      f"{r['kendall']:>8.3f} {r['pick']:>20} {100 * r['pick_test']:>12.2f}")  # fmt: skip
            hc = result["candidates"][0]
            print(f"scoring the grid on the real split took {real['scoring_seconds']:.3f} s, on the "
                  f"HCDC set {hc['scoring_seconds']:.3f} s; training the grid took "
                  f"{result['grid_training_seconds']:.0f} s (condensing: {hc['build_seconds']:.0f} s)")  # fmt: skip
            print(f"wrote {out / 'hcdc.json'} and {out / 'hcdc.png'}")
            return 0
