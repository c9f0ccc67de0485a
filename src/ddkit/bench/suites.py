"""Benchmark suites as data."""

from __future__ import annotations

from dataclasses import dataclass, field

from ddkit.registry import Registry


@dataclass(frozen=True)
class Suite:
    """What a benchmark run covers. ``methods=()`` means every registered method and selector.

    ``iterations`` gives per-method distillation budgets (written next to each result): a number,
    or ``{ipc: number}`` (IPCs not listed fall back as unlisted methods do); methods not listed use
    ``min(their default, default_iterations)``. ``dataset_iterations`` overrides ``iterations``
    per dataset (``{dataset: {method: number or {ipc: number}}}``). ``models`` names the evaluation network per dataset
    (default: the protocol's), recorded in every row.
    """

    name: str
    datasets: tuple[str, ...]
    ipcs: tuple[int, ...]
    protocol: str
    runs: int = 3
    epochs: int | None = None  # override the protocol's epochs (recorded)
    methods: tuple[str, ...] = ()
    iterations: dict[str, int | dict[int, int]] = field(default_factory=dict)
    default_iterations: int = 200
    dataset_iterations: dict[str, dict[str, int | dict[int, int]]] = field(default_factory=dict)
    full_data: bool = True
    # full-data row: epochs, for all datasets or per dataset (more data -> more steps per epoch)
    full_data_epochs: int | dict[str, int] | None = None
    models: dict[str, str] = field(default_factory=dict)  # dataset -> evaluation model

    def full_epochs(self, dataset: str) -> int | None:
        """Epochs of the full-data row for ``dataset`` (``None``: the suite's / protocol's)."""
        e = self.full_data_epochs
        if isinstance(e, dict):
            e = e.get(dataset)
        return e or self.epochs

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
            "idm": {1: 500, 10: 300, 50: 200},
            "mtt": {1: 500, 10: 300, 50: 200},
            "tesla": {1: 500, 10: 300, 50: 200},
            "datm": {1: 500, 10: 300, 50: 200},
            "sre2l": 1000,
            "rded": 0,
        },
        # mnist5k: a DM step embeds 2,560 real 28x28 images, ~4x digits; these budgets keep each
        # cell to tens of minutes on one core (step times in BENCHMARKS.md)
        dataset_iterations={
            "mnist5k": {"dm": {1: 1000, 10: 1000, 50: 500}, "idm": {1: 300, 10: 300, 50: 200}}
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
