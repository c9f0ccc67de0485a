"""Benchmark suites as data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ddkit.registry import Registry


@dataclass(frozen=True)
class Suite:
    """What a benchmark run covers. ``methods=()`` means every registered method and selector.

    ``iterations`` gives per-method distillation budgets (written next to each result): a number,
    or ``{ipc: number}`` (IPCs not listed fall back as unlisted methods do); methods not listed use
    ``min(their default, default_iterations)``. ``dataset_iterations`` overrides ``iterations``
    per dataset (``{dataset: {method: number or {ipc: number}}}``). ``models`` names the evaluation
    network per dataset (default: the protocol's), recorded in every row. ``options`` are method
    config values (``{method: {key: value}}``, recorded in every row); ``published`` holds the
    literature's figures (``{(dataset, method, ipc): accuracy %}``, IPC 0 for full data) shown
    beside the measured ones, and ``published_budgets`` what those figures were run with, so that
    every reduction is written in the table's heading.

    ``keeps`` makes a pruning sweep: for each percentage of the training split kept, one cell
    per method of ``methods`` (pruning methods: ``random``, a score, or ``<score>-ccs``; see
    :func:`ddkit.methods.coreset.pruning.pruning_methods`), evaluated like the full-data row but
    for ``100 / keep`` times its epochs (about the same number of optimisation steps).
    """

    name: str
    datasets: tuple[str, ...]
    ipcs: tuple[int, ...]
    protocol: str
    keeps: tuple[int, ...] = ()  # kept percentages of a pruning sweep
    runs: int = 3
    epochs: int | None = None  # override the protocol's epochs (recorded)
    methods: tuple[str, ...] = ()
    iterations: dict[str, int | dict[int, int]] = field(default_factory=dict)
    default_iterations: int = 200
    dataset_iterations: dict[str, dict[str, int | dict[int, int]]] = field(default_factory=dict)
    full_data: bool = True
    # full-data row: epochs, for all datasets or per dataset (more data -> more steps per epoch)
    full_data_epochs: int | dict[str, int] | None = None
    full_data_runs: int | None = None  # runs of the full-data row (default: ``runs``)
    models: dict[str, str] = field(default_factory=dict)  # dataset -> evaluation model
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    published: dict[tuple[str, str, int], float] = field(default_factory=dict)
    published_budgets: dict[str, str] = field(default_factory=dict)
    # distillation seeds of a cell (a number, or ``{ipc: number}``; IPCs not listed: 1): each
    # seed distils its own set, trained by ``runs`` networks, and the cell's mean ± std spans
    # all seeds x networks; the random-real row draws ``random_draws`` sets (IPCs not listed:
    # as many as ``distill_seeds``)
    distill_seeds: int | dict[int, int] = 1
    random_draws: int | dict[int, int] | None = None
    # per-IPC method options over ``options`` (``{method: {ipc: {key: value}}}``)
    ipc_options: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)

    def options_for(self, method: str, ipc: int) -> dict[str, Any]:
        """The method config values of ``method`` at ``ipc``: ``options``, then ``ipc_options``."""
        return {**self.options.get(method, {}), **self.ipc_options.get(method, {}).get(ipc, {})}

    def full_epochs(self, dataset: str) -> int | None:
        """Epochs of the full-data row for ``dataset`` (``None``: the suite's / protocol's)."""
        e = self.full_data_epochs
        if isinstance(e, dict):
            e = e.get(dataset)
        return e or self.epochs

    def seeds(self, method: str, ipc: int) -> int:
        """Distillation seeds (for ``random``: draws) of ``method`` at ``ipc``; 1 for the
        full-data row and pruning cells (IPC 0)."""
        if not ipc:
            return 1
        draws = self.random_draws
        if isinstance(draws, dict):
            draws = draws.get(ipc)
        spec = self.distill_seeds
        spec = spec.get(ipc, 1) if isinstance(spec, dict) else spec
        return max(1, int(draws if method == "random" and draws is not None else spec))

    def budget(self, method: str, ipc: int, default: int, dataset: str | None = None) -> int:
        """Distillation iterations for ``method`` at ``ipc`` (on ``dataset``, if it has overrides)."""
        for table in (self.dataset_iterations.get(dataset or "", {}), self.iterations):
            spec = table.get(method)
            if isinstance(spec, dict):
                spec = spec.get(ipc)
            if spec is not None:
                return int(spec)
        return min(default, self.default_iterations)


SUITES: Registry[Suite] = Registry("suite")


def suite_options(suite: str | None, method: str, ipc: int) -> dict[str, Any]:
    """The method config values the bench suite named ``suite`` gives ``method`` at ``ipc``
    (:meth:`Suite.options_for`; ``{}`` for ``None``), e.g. to tune or study a suite's recipe on
    a validation split with the options its cells use."""
    return SUITES.get(suite).options_for(method, ipc) if suite else {}


SUITES.add(
    "quick",
    Suite(
        name="quick",
        datasets=("digits",),
        ipcs=(1, 10),
        protocol="fast",
        runs=3,
        iterations={
            "dc": 50,
            "dsa": 50,
            "dm": 500,
            "idm": 200,
            "mtt": 200,
            "tesla": 200,
            "datm": 200,
            "sre2l": 300,
            "rded": 0,
        },
        full_data_epochs=50,
    ),
    help="digits, IPC 1 and 10, every method, protocol fast (100 epochs, DSA), 3 runs",
)
SUITES.add(
    "standard",
    Suite(
        name="standard",
        datasets=("digits", "mnist5k"),
        ipcs=(1, 10, 50),
        protocol="dsa",
        runs=3,
        epochs=300,
        # CPU budgets (2 cores): gradient matching costs ~IPC x the matching steps of IPC 1
        iterations={
            "dc": {1: 200, 10: 20, 50: 5},
            "dsa": {1: 200, 10: 20, 50: 5},
            "dm": {1: 2000, 10: 1000, 50: 500},
            "m3d": {1: 2000, 10: 1000, 50: 500},  # dm's budgets: the same step plus a kernel
            "ncfm": {1: 2000, 10: 1000, 50: 500},
            "idm": {1: 500, 10: 300, 50: 200},
            "mtt": {1: 500, 10: 300, 50: 200},
            "tesla": {1: 500, 10: 300, 50: 200},
            "datm": {1: 500, 10: 300, 50: 200},
            "pad": {1: 500, 10: 300, 50: 200},  # datm's budgets: the same step plus a mask
            "sre2l": 1000,
            "cda": 1000,  # sre2l's budget: the same recovery step (edc: one more teacher pass)
            "edc": 1000,
            "rded": 0,
        },
        # mnist5k: a DM step embeds 2,560 real 28x28 images, ~4x digits; these budgets keep each
        # cell to tens of minutes on one core (step times in BENCHMARKS.md)
        dataset_iterations={
            "mnist5k": {
                "dm": {1: 1000, 10: 1000, 50: 500},
                "m3d": {1: 1000, 10: 1000, 50: 500},
                "ncfm": {1: 1000, 10: 1000, 50: 500},
                "idm": {1: 300, 10: 300, 50: 200},
                "frepo": {1: 500, 10: 500},  # its presets' budget: a step costs a fraction of dm's
            }
        },
        # digits has 6 steps per epoch (batch 256): 30 epochs under-train the reference, 300 do
        # not; mnist5k (16 steps per epoch) is trained at 30 epochs (figures in BENCHMARKS.md)
        full_data_epochs={"digits": 300, "mnist5k": 30},
        # ConvNet-3 width 128 is slow on 28x28 on a CPU; width 32 keeps mnist5k cells to
        # minutes (the mnist5k presets distil with the same width)
        models={"mnist5k": "convnet-w32"},
    ),
    help="digits and mnist5k, IPC 1/10/50, every method, protocol dsa (300 epochs here), 3 runs; "
    "mnist5k evaluated with ConvNet-3 width 32",
)


# Published accuracies (%) on MNIST / Fashion-MNIST, ConvNet-3 width 128, from ../shared/REFERENCE.md
# (DC ICLR'21, DSA ICML'21, DM WACV'23, KIP NeurIPS'21, FRePo NeurIPS'22, IDC ICML'22 tables;
# random, herding, DM and the kernel methods' MNIST/Fashion rows are commonly quoted values).
_PAPER_TABLE = {
    "random": ((64.9, 95.1, 97.9), (51.4, 73.8, 82.5)),
    "herding": ((89.2, 93.7, 94.8), (67.0, 71.1, 71.9)),
    "dc": ((91.7, 97.4, 98.8), (70.5, 82.3, 83.6)),
    "dsa": ((88.7, 97.8, 99.2), (70.6, 84.6, 88.7)),
    "dm": ((89.7, 97.5, 98.6), (70.7, 83.5, 88.1)),
    "kip": ((90.1, 97.5, 98.3), (73.5, 86.8, 88.0)),
    "frepo": ((93.0, 98.6, 99.2), (75.6, 86.2, 89.6)),
}
PAPER_PUBLISHED: dict[tuple[str, str, int], float] = {
    (dataset, method, ipc): acc
    for method, rows in _PAPER_TABLE.items()
    for dataset, accs in zip(("mnist", "fashionmnist"), rows, strict=True)
    for ipc, acc in zip((1, 10, 50), accs, strict=True)
} | {("mnist", "full", 0): 99.6, ("fashionmnist", "full", 0): 93.5}

_W32 = {"model": "convnet-w32"}
SUITES.add(
    "paper",
    Suite(
        name="paper",
        datasets=("mnist", "fashionmnist"),
        ipcs=(1, 10, 50),
        protocol="dsa",
        runs=3,
        methods=(
            "random",
            "herding",
            "kcenter",
            "dc",
            "dsa",
            "dm",
            "m3d",
            "ncfm",
            "idm",
            "mtt",
            "kip",
            "rfad",
            "frepo",
            "bptt",
            "rtp",
        ),  # fmt: skip
        # distillation on 60,000 images with ConvNet-3 width 32 (the published width 128 costs
        # ~5x more per step here); the same budgets as the standard suite's mnist5k cells
        iterations={
            "dc": {1: 200, 10: 20, 50: 5},
            "dsa": {1: 200, 10: 20, 50: 5},
            "dm": {1: 1000, 10: 1000, 50: 500},
            "m3d": {1: 1000, 10: 1000, 50: 500},
            "ncfm": {1: 1000, 10: 1000, 50: 500},
            "idm": {1: 300, 10: 300, 50: 200},
            "mtt": {1: 500, 10: 1000, 50: 200},
            "kip": 200,
            "rfad": 200,
            "frepo": 200,
            "bptt": 200,
            "rtp": 200,
        },
        options={
            # selectors embed with a network trained 2 epochs on the 60,000 images (10 by default)
            "herding": {**_W32, "epochs_net": 2},
            "kcenter": {**_W32, "epochs_net": 2},
            "dc": _W32,
            "dsa": _W32,
            "dm": _W32,
            # the mnist5k preset's image step (chosen on mnist5k's validation split: the MMD's
            # gradients are far smaller than DM's, and at DM's lr_img 1 the set barely moves;
            # benchmarks/results/tune_m3d_mnist5k_ipc10_lr_img.json)
            "m3d": {**_W32, "lr_img": 1000.0},
            # the mnist5k preset's matching sizes; its pool is the mtt cells' experts (same
            # settings, one cached folder): 5 x 5 epochs on the 60,000 images
            "ncfm": {
                **_W32,
                "batch_real": 256,
                "num_freqs": 1024,
                "num_experts": 5,
                "expert_train_epochs": 5,
                "expert_batch": 256,
            },
            "idm": _W32,
            "kip": {"learn_labels": True},
            "frepo": {
                "model": "frepoconv",
                "learn_labels": True,
                "optimizer_net": "adam",
                "lr_net": 0.0003,
            },
            # the mnist5k preset's step sizes and clipping (chosen on mnist5k's validation split:
            # lr_img, lr_lr, syn_lr, clip_grad, clip_lr_grad, expert_epochs); the experts at the
            # published batch 256 (mnist5k's preset: 32) and cut to 5 x 5 epochs (an expert epoch
            # on 60,000 images costs 12x one on mnist5k), so 20 student steps per expert epoch
            # (mnist5k: 10) and starts up to epoch 4 (mnist5k: 8)
            "mtt": {
                **_W32,
                "num_experts": 5,
                "expert_train_epochs": 5,
                "expert_batch": 256,
                "syn_steps": 20,
                "expert_epochs": 1,
                "max_start_epoch": 4,
                "lr_img": 100.0,
                "lr_lr": 1e-5,
                "syn_lr": 0.01,
                "clip_grad": 1.0,
                "clip_lr_grad": 100.0,
            },
        },
        # the published variants of the kernel methods: KIP's pooled ConvNet kernel (IPC 1; at
        # IPC 10 its 100-image support costs minutes of CPU per step: the FC kernel there) and
        # FRePo's backbone and online optimiser (the authors' code: Adam lr 3e-4), both with
        # learned labels; a step of the ConvNet kernel costs ~1 CPU s per real target, so 2 per
        # class per step
        # mtt at IPC 10: experts and student matched as MTT's paper matches them (issue 40): 10
        # experts x 6 epochs, segments of 2 expert epochs (470 expert steps) against 40 student
        # steps, no clipping (not in the paper); syn_steps chosen on MNIST's validation split
        # against random real images' draws (benchmarks/results/
        # tune_mtt_mnist_ipc10_matched_syn_steps{20,40}.json, tune_random_mnist_ipc10_draw*.json)
        ipc_options={
            "kip": {1: {"architecture": "convnet", "depth": 3, "batch_real": 2}},
            "mtt": {
                10: {
                    "num_experts": 10,
                    "expert_train_epochs": 6,
                    "syn_steps": 40,
                    "expert_epochs": 2,
                    "clip_grad": 0.0,
                    "clip_lr_grad": 0.0,
                }
            },
        },
        # headline cells: 2 distillation seeds x 3 networks; random real images: several draws
        distill_seeds={1: 2, 10: 2},
        random_draws={1: 5, 10: 3},
        full_data_epochs=2,
        full_data_runs=1,
        published=PAPER_PUBLISHED,
        published_budgets={
            "dc": "1000 iterations, ConvNet-3 width 128",
            "dsa": "1000 iterations, ConvNet-3 width 128",
            "dm": "20,000 iterations, ConvNet-3 width 128",
            "idm": "20,000 iterations, width 128, 100-network queue",
            "mtt": "5,000 iterations, 100 experts x 50 epochs, width 128",
            "kip": "KIP's ConvNet NTK (a stem convolution, 3 conv-ReLU-avg-pool blocks, flatten "
            "readout) with learned labels, run far longer with large real batches on "
            "accelerators (NeurIPS'21). Left here: 200 iterations; 2 real targets per class per "
            "step at IPC 1; the fully connected NTK at IPC 10 (the ConvNet kernel of 100 support "
            "images costs minutes of CPU per step); networks trained on the learned labels' "
            "argmax with cross-entropy (protocol dsa), not on the label vectors",
            "frepo": "FRePo's ConvNet (width 128 doubling per block, batch norm) with learned "
            "labels and their margin term, online networks by Adam lr 3e-4, images and labels "
            "by LAMB lr 3e-4 (cosine to 10 %) on random batches of 1,024 real images for "
            "500,000 iterations, and the checkpoint of the highest test accuracy among those "
            "evaluated during distillation (NeurIPS'22, the authors' code and README command: "
            "best_ckpt). Left here: 200 iterations; images and labels by Adam at the mnist "
            "presets' lr_img and lr_labels; 100 real images per class per step and no margin "
            "term (options label_margin and real_batch=random, neither a gain on MNIST's "
            "validation split, where the margin term never acts); the last iteration's set, "
            "never a test-chosen one; networks trained on the labels' argmax with "
            "cross-entropy (ConvNet-3, instance norm; protocol dsa)",
            "random": "an average over draws of random real images",
            "herding": "embedding of a ConvNet-3 width 128 trained on the full data",
            "full": "300+ epochs, several runs",
            "evaluation": "5 x 20 (DC) or 5 x 5 (DM) networks; DC evaluated 1000 epochs with its "
            "own MNIST augmentation (protocol dc_aug), DSA/DM 1000 epochs with DSA",
        },
    ),
    help="MNIST and Fashion-MNIST (data root), IPC 1/10/50, hard-label methods and selectors, "
    "protocol dsa (1000 epochs), ConvNet-3 width 128 evaluation, beside the published figures",
)

_PROXY = {"model": "convnet-w32"}  # proxy networks of the pruning scores
SUITES.add(
    "pruning",
    Suite(
        name="pruning",
        datasets=("mnist5k",),
        ipcs=(),
        keeps=(2, 5, 10, 30, 50, 70, 90),
        protocol="dsa",
        runs=3,
        methods=("random", "el2n", "grand", "margin", "forgetting", "dyn-unc", "margin-ccs"),
        options={name: _PROXY for name in ("el2n", "grand", "margin", "forgetting", "dyn-unc")}
        | {"margin-ccs": _PROXY},
        full_data_epochs={"mnist5k": 30},
        models={"mnist5k": "convnet-w32"},
    ),
    help="mnist5k pruned to 2-90 % by every pruning score (and CCS over the margin) beside "
    "random rows and the full data; the standard suite's full-data recipe, epochs scaled to keep "
    "the optimisation steps",
)
