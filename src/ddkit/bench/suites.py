"""Benchmark suites as data."""

from __future__ import annotations

from dataclasses import dataclass, field

from ddkit.registry import Registry


@dataclass(frozen=True)
class Suite:
    """What a benchmark run covers. ``methods=()`` means every registered method and selector.

    ``iterations`` gives per-method distillation budgets (written next to each result);
    methods not listed use ``min(their default, default_iterations)``.
    """

    name: str
    datasets: tuple[str, ...]
    ipcs: tuple[int, ...]
    protocol: str
    runs: int = 3
    epochs: int | None = None  # override the protocol's epochs (recorded)
    methods: tuple[str, ...] = ()
    iterations: dict[str, int] = field(default_factory=dict)
    default_iterations: int = 200
    full_data: bool = True
    full_data_epochs: int | None = None  # full-data row: epochs (more data -> more steps/epoch)


SUITES: Registry[Suite] = Registry("suite")

SUITES.add(
    "quick",
    Suite(
        name="quick",
        datasets=("digits",),
        ipcs=(1, 10),
        protocol="fast",
        runs=3,
        iterations={"dc": 50, "dsa": 50, "dm": 500, "idm": 200, "mtt": 200, "tesla": 200, "datm": 200,
                    "sre2l": 300, "rded": 0},
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
        iterations={"dc": 200, "dsa": 200, "dm": 2000, "idm": 500, "mtt": 500, "tesla": 500, "datm": 500,
                    "sre2l": 1000, "rded": 0},
        full_data_epochs=30,
    ),
    help="digits and mnist5k, IPC 1/10/50, every method, protocol dsa (300 epochs here), 3 runs",
)
