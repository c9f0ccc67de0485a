"""Federated learning on non-IID clients: one-shot upload of distilled sets against FedAvg.

The training split is divided over ``clients`` by a Dirichlet(``alpha``) prior on each class's
shares (Hsu et al. 2019; small ``alpha``: each client holds few classes). In the one-shot
setting of FedD3 (Song et al. 2023) and FedDM (Xiong et al., CVPR 2023), every client distils
its own data once with the chosen method or selector and uploads the set; the server trains a
fresh network on the union. The baseline is FedAvg (McMahan et al., AISTATS 2017): each round
the server sends its weights, every client trains ``local_epochs`` on its data and sends them
back, the server averages them weighted by data size. Both are reported as test accuracy
against the bytes communicated.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import torch

from ddkit.apps.base import App, register_app
from ddkit.apps.continual import class_subset, in_full_label_space, join_sets
from ddkit.commands import COUNT, Limit
from ddkit.data.dataset import DatasetSplits, ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval import evaluate
from ddkit.eval.protocol import EvalProtocol, get_protocol
from ddkit.eval.train import TrainRecipe, accuracy, sgd_train
from ddkit.methods import create_method, method_names
from ddkit.models import build_network


def check_clients(clients: int, rows: int) -> None:
    """A one-line :class:`ConfigError` for more clients than training rows (each client's
    Dirichlet draw and row list would be allocated for nothing)."""
    if clients > rows:
        raise ConfigError(f"--clients {clients:,} exceeds the {rows:,} training rows; use fewer")


def dirichlet_split(
    labels: torch.Tensor, clients: int, alpha: float, generator: torch.Generator
) -> list[torch.Tensor]:
    """Row indices per client: each class's rows are shuffled and cut in proportions drawn
    from Dirichlet(``alpha``) over the clients."""
    if clients < 1 or not 0 < alpha < math.inf:
        raise ConfigError(f"need clients >= 1 and a finite alpha > 0, got {clients} and {alpha}")
    check_clients(clients, len(labels))
    parts: list[list[torch.Tensor]] = [[] for _ in range(clients)]
    concentration = torch.full((clients,), float(alpha))
    for c in torch.unique(labels).tolist():
        rows = torch.nonzero(labels == c).flatten()
        rows = rows[torch.randperm(len(rows), generator=generator)]
        shares = _dirichlet(concentration, generator)
        cuts = (torch.cumsum(shares, 0) * len(rows)).round().long().clamp(max=len(rows))
        start = 0
        for k, end in enumerate(cuts.tolist()):
            parts[k].append(rows[start:end])
            start = end
    return [torch.sort(torch.cat(p)).values for p in parts]


def _dirichlet(concentration: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A Dirichlet draw from ``generator`` (torch's own sampler takes no generator): normalised
    Gamma(alpha, 1) variates, each by Marsaglia and Tsang's method (ACM TOMS 2000), with the
    ``U**(1/alpha)`` boost for alpha < 1."""
    draws = []
    for a in concentration.tolist():
        boost = a < 1
        d = (a + 1 if boost else a) - 1 / 3
        c = 1 / (9 * d) ** 0.5
        while True:
            x = float(torch.randn(1, generator=generator, dtype=torch.float64))
            v = (1 + c * x) ** 3
            u = float(torch.rand(1, generator=generator, dtype=torch.float64))
            if v > 0 and math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
                g = d * v
                break
        if boost:
            g *= float(torch.rand(1, generator=generator, dtype=torch.float64)) ** (1 / a)
        draws.append(g)
    t = torch.tensor(draws, dtype=torch.float64)
    return t / t.sum() if t.sum() > 0 else torch.full_like(t, 1 / len(t))


def client_upload(
    data: ImageDataset, method: str, ipc: int, *, iterations: int | None, seed: int
) -> SyntheticSet | None:
    """What one client uploads: its classes with at least ``ipc`` images, distilled by
    ``method`` at ``ipc`` (labels in the global class space); ``None`` if it has none."""
    counts = torch.bincount(data.labels, minlength=data.spec.num_classes)
    classes = torch.nonzero(counts >= ipc).flatten().tolist()
    if not classes:
        return None
    local = class_subset(data, classes)
    m = create_method(method, dataset=local.spec.name, ipc=ipc)
    syn = m.fit(local, ipc, iterations=iterations, seed=seed)
    up = in_full_label_space(syn, classes, data.spec)
    up.meta["classes"] = classes
    return up


def one_shot(
    splits: DatasetSplits,
    parts: list[torch.Tensor],
    method: str,
    ipc: int,
    *,
    protocol: str | EvalProtocol = "dc",
    iterations: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Every client uploads once (:func:`client_upload`); the server trains on the union. The
    union's classes are unbalanced (a client uploads only the classes it holds), so the server
    needs a recipe that trains to a fit: under ``fast`` (100 epochs) networks stay near
    uniform predictions, right on balanced sets by argmax but biased to frequent classes here;
    ``dc``'s 300 epochs fit it."""
    uploads = []
    for k, rows in enumerate(parts):
        if len(rows) == 0:
            continue
        up = client_upload(
            splits.train.subset(rows), method, ipc, iterations=iterations, seed=seed + k
        )
        if up is not None:
            uploads.append(up)
    if not uploads:
        raise ConfigError(f"no client holds {ipc} images of any class; lower the IPC")
    union = join_sets(uploads)
    report = evaluate(union, splits.test, protocol, seed=seed)  # resolved there, once
    r = report.results[0]
    return {
        "method": method,
        "ipc": ipc,
        "images": len(union),
        "bytes": sum(u.storage_bytes()["total"] for u in uploads),
        "accuracies": r.accuracies,
        "mean": r.mean,
        "std": r.std,
    }


def fedavg(
    splits: DatasetSplits,
    parts: list[torch.Tensor],
    *,
    model: str = "convnet",
    rounds: int = 20,
    local_epochs: int = 1,
    lr: float = 0.01,
    batch_size: int = 64,
    seed: int = 0,
) -> dict[str, Any]:
    """FedAvg over ``rounds``; returns the test accuracy and the bytes communicated (weights
    down and up for every participating client) after every round."""
    COUNT.check("rounds", rounds)
    COUNT.check("local_epochs", local_epochs)
    spec = splits.train.spec
    server = build_network(model, spec, seed)
    weight_bytes = sum(p.numel() * p.element_size() for p in server.state_dict().values())
    sizes = torch.tensor([len(p) for p in parts], dtype=torch.float64)
    active = [k for k in range(len(parts)) if len(parts[k]) > 0]
    g = torch.Generator().manual_seed(seed)
    recipe = TrainRecipe(local_epochs, lr, batch_size)
    curve, sent = [], 0
    for _ in range(rounds):
        states = []
        for k in active:
            local = build_network(model, spec, seed)
            local.load_state_dict(server.state_dict())
            data = splits.train.subset(parts[k])
            sgd_train(local, data.images, data.labels, recipe, generator=g)
            states.append(local.state_dict())
        weights = sizes[active] / sizes[active].sum()
        server.load_state_dict(_average(states, weights))
        sent += 2 * weight_bytes * len(active)
        curve.append({"bytes": sent, "accuracy": accuracy(server, splits.test.images,
                                                          splits.test.labels)})  # fmt: skip
    return {"model": model, "rounds": rounds, "local_epochs": local_epochs, "curve": curve}


def _average(states: list[dict[str, torch.Tensor]], weights: torch.Tensor) -> dict[str, Any]:
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            stacked = torch.stack([s[key].double() for s in states])
            shape = (-1,) + (1,) * first.dim()
            out[key] = (stacked * weights.view(shape)).sum(0).to(first.dtype)
        else:  # counters such as BatchNorm's num_batches_tracked
            out[key] = first
    return out


@register_app
class FederatedApp(App):
    """``ddkit app federated``."""

    name = "federated"
    help = "one-shot distilled uploads from non-IID clients against FedAvg"
    limits = {"ipc": COUNT, "clients": COUNT, "rounds": COUNT, "local_epochs": COUNT,
              "alphas": Limit(0, open=True), "iterations": Limit(0, integer=True)}  # fmt: skip

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        cls.add_shared(parser)
        parser.add_argument("--methods", default="random,dm", help="what each client uploads")
        parser.add_argument(
            "--ipc", type=int, default=5, help="images per class each client uploads"
        )
        parser.add_argument("--clients", type=int, default=10)
        parser.add_argument("--alphas", default="0.1,0.5,100", help="Dirichlet concentrations")
        parser.add_argument("--rounds", type=int, default=20, help="FedAvg rounds")
        parser.add_argument(
            "--local-epochs", type=int, default=1, help="FedAvg local epochs per round"
        )
        parser.add_argument("--protocol", default="dc", help="the server's training on the uploads "
                         "(the union is unbalanced: fast's 100 epochs under-train it)")  # fmt: skip
        parser.add_argument("--iterations", type=int, default=None, help="distillation budget")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        import torch

        from ddkit.claims import hold_output
        from ddkit.data import load_dataset
        from ddkit.io import atomic_write_json
        from ddkit.plots import plot_federated

        methods = method_names(args.methods)
        alphas = [float(a) for a in args.alphas.split(",") if a]
        protocol = get_protocol(args.protocol)  # resolved once, here
        splits = load_dataset(args.dataset, root=args.root)
        splits.train.check_ipc(args.ipc)
        check_clients(args.clients, len(splits.train))
        with hold_output(args, "output folder", "app federated") as out:
            results = []
            for alpha in alphas:
                g = torch.Generator().manual_seed(args.seed)
                parts = dirichlet_split(splits.train.labels, args.clients, alpha, g)
                print(f"alpha {alpha:g}: client sizes {[len(p) for p in parts]}")
                row = {"alpha": alpha, "clients": args.clients, "sizes": [len(p) for p in parts]}
                row["one_shot"] = [
                    one_shot(
                        splits,
                        parts,
                        m,
                        args.ipc,
                        protocol=protocol,
                        iterations=args.iterations,
                        seed=args.seed,
                    )  # fmt: skip
                    for m in methods
                ]
                row["fedavg"] = fedavg(
                    splits,
                    parts,
                    rounds=args.rounds,
                    local_epochs=args.local_epochs,
                    seed=args.seed,
                )
                for one in row["one_shot"]:
                    print(f"  {one['method']:<8} one upload, {one['bytes']:>9,} bytes: "
                          f"{100 * one['mean']:.2f} ± {100 * one['std']:.2f} %")  # fmt: skip
                last = row["fedavg"]["curve"][-1]
                print(f"  FedAvg   {args.rounds} rounds, {last['bytes']:>9,} bytes: "
                      f"{100 * last['accuracy']:.2f} %")  # fmt: skip
                results.append(row)
                atomic_write_json(
                    out / "federated.json", {"dataset": args.dataset, "results": results}
                )
            plot_federated(results, out / "federated.png")
            print(f"wrote {out / 'federated.json'} and {out / 'federated.png'}")
            return 0
