"""The `Distiller` API shared by every distillation method and coreset selector.

A method object stores its hyper-parameters (``self.config``, a frozen dataclass) and nothing
else until :meth:`Distiller.fit` runs. ``fit`` calls ``init`` once and then ``step`` per
iteration; everything a step needs lives in ``self.state_`` (tensors, optimizers, generators,
JSON scalars), so checkpoint/resume and progress reporting are generic.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError, FileFormatError
from ddkit.io import atomic_write_json, ensure_writable_dir, load_tensors, read_json, save_tensors
from ddkit.registry import Registry


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Hyper-parameters shared by all methods; subclasses add their own fields."""

    iterations: int = 0  # default number of outer iterations (0: the method needs no iterations)


class Callback:
    """Hooks called by :meth:`Distiller.fit` (override what you need)."""

    def on_start(self, method: Distiller, total: int, start: int) -> None: ...
    def on_step_end(self, method: Distiller, iteration: int, metrics: dict[str, float]) -> None: ...
    def on_end(self, method: Distiller, result: SyntheticSet) -> None: ...


class Distiller:
    """Base class. Subclasses set ``name``, ``Config`` and implement ``init``/``step``/``result``.

    ``presets`` maps ``(dataset, ipc)`` (either may be ``"*"``) to config overrides; the
    most specific match wins (see :func:`resolve_config`).
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "distiller"  # "distiller" or "selector"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    presets: ClassVar[dict[tuple[str, Any], dict[str, Any]]] = {}

    def __init__(self, config: MethodConfig | None = None, **overrides: Any) -> None:
        base = config if config is not None else self.Config()
        self.config = _replace_config(base, overrides, self.name)
        self.state_: dict[str, Any] = {}

    # ---------------------------------------------------------------- to implement
    def init(self, train: ImageDataset, ipc: int, generator: torch.Generator) -> None:
        """Create the initial state (synthetic images, optimisers, ...) in ``self.state_``."""
        raise NotImplementedError

    def step(self, iteration: int) -> dict[str, float]:
        """Run one outer iteration; return scalar metrics for the log."""
        raise NotImplementedError

    def result(self) -> SyntheticSet:
        """The current synthetic set (provenance is added by ``fit``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- generic driver
    def fit(
        self,
        train: ImageDataset,
        ipc: int,
        *,
        iterations: int | None = None,
        seed: int = 0,
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 50,
        resume: bool = False,
    ) -> SyntheticSet:
        """Distil ``train`` into ``ipc`` images per class. Same seed => same result.

        With ``checkpoint_dir`` the state is saved atomically every ``checkpoint_every``
        iterations; ``resume=True`` continues from the last checkpoint there and finishes with
        the same set as an uninterrupted run.
        """
        train.check_ipc(ipc)
        total = self.config.iterations if iterations is None else int(iterations)
        if total < 0:
            raise ConfigError(f"iterations must be >= 0, got {total}")
        g = torch.Generator().manual_seed(int(seed))
        self.state_ = {}
        self.train_, self.ipc_, self.seed_ = train, int(ipc), int(seed)
        self.init(train, ipc, g)
        self.state_.setdefault("generator", g)
        start = 0
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt is not None:
            ensure_writable_dir(ckpt)
            if resume and (ckpt / "state.json").exists():
                start = self._load_checkpoint(ckpt, seed, ipc, total)
        for cb in callbacks:
            cb.on_start(self, total, start)
        t0 = time.perf_counter()
        for it in range(start, total):
            metrics = self.step(it)
            for cb in callbacks:
                cb.on_step_end(self, it, metrics)
            done = it + 1
            if ckpt is not None and (done % checkpoint_every == 0 or done == total):
                self._save_checkpoint(ckpt, done, seed, ipc, total)
        out = self.result()
        out.meta = {
            **out.meta,
            "method": self.name,
            "ipc": int(ipc),
            "seed": int(seed),
            "iterations": total,
            "config": self.config_dict(),
            "dataset": train.spec.name,
            "fit_seconds": time.perf_counter() - t0,
        }
        for cb in callbacks:
            cb.on_end(self, out)
        return out

    def config_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self.config))

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, folder: Path, done: int, seed: int, ipc: int, total: int) -> None:
        tensors, scalars = flatten_state(self.state_)
        save_tensors(folder / "state.safetensors", tensors)
        atomic_write_json(
            folder / "state.json",
            {
                "method": self.name,
                "iteration": done,
                "seed": seed,
                "ipc": ipc,
                "iterations": total,
                "config": self.config_dict(),
                "scalars": scalars,
            },
        )

    def _load_checkpoint(self, folder: Path, seed: int, ipc: int, total: int) -> int:
        meta = read_json(folder / "state.json")
        expect = {"method": self.name, "seed": seed, "ipc": ipc, "config": self.config_dict()}
        for k, v in expect.items():
            if meta.get(k) != v:
                raise ConfigError(
                    f"checkpoint in {str(folder)!r} was made with a different {k} "
                    f"({meta.get(k)!r} vs {v!r}); use a new output folder or drop --resume"
                )
        tensors = load_tensors(folder / "state.safetensors")
        try:
            restore_state(self.state_, tensors, meta["scalars"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise FileFormatError(
                f"checkpoint in {str(folder)!r} does not fit this method: {e}"
            ) from None
        return min(int(meta["iteration"]), total)


def _replace_config(base: MethodConfig, overrides: dict[str, Any], name: str) -> MethodConfig:
    fields = {f.name: f for f in dataclasses.fields(base)}
    clean = {}
    for k, v in overrides.items():
        if k not in fields:
            raise ConfigError(
                f"unknown option {k!r} for method {name!r}; valid: {', '.join(sorted(fields))}"
            )
        cur = getattr(base, k)
        if v is not None and isinstance(cur, tuple) and isinstance(v, list):
            v = tuple(v)
        clean[k] = v
    return dataclasses.replace(base, **clean)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


# -------------------------------------------------------------------- state (de)serialisation
def flatten_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a method state into tensors (for safetensors) and JSON scalars.

    Values may be tensors, ``torch.Generator``s, optimizers, lists of tensors, or JSON scalars.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for key, val in state.items():
        if isinstance(val, torch.Tensor):
            tensors[f"t.{key}"] = val.detach()
        elif isinstance(val, torch.Generator):
            tensors[f"g.{key}"] = val.get_state()
        elif isinstance(val, torch.optim.Optimizer):
            sd = val.state_dict()
            opt_scalars: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
            for pid, st in sd["state"].items():
                entry = {}
                for name, v in st.items():
                    if isinstance(v, torch.Tensor):
                        tensors[f"o.{key}.{pid}.{name}"] = v.detach()
                        entry[name] = "__tensor__"
                    else:
                        entry[name] = v
                opt_scalars["state"][str(pid)] = entry
            scalars[f"o.{key}"] = opt_scalars
        elif isinstance(val, list) and all(isinstance(v, torch.Tensor) for v in val):
            for i, v in enumerate(val):
                tensors[f"l.{key}.{i}"] = v.detach()
            scalars[f"l.{key}"] = len(val)
        else:
            json.dumps(val)  # must be JSON-serialisable
            scalars[f"s.{key}"] = val
    return tensors, scalars


def restore_state(
    state: dict[str, Any], tensors: dict[str, torch.Tensor], scalars: dict[str, Any]
) -> None:
    """Load values saved by :func:`flatten_state` into an initialised ``state`` (in place)."""
    for key, val in list(state.items()):
        if isinstance(val, torch.Tensor):
            src = tensors[f"t.{key}"]
            if src.shape != val.shape:
                raise ValueError(
                    f"shape of {key} changed: {tuple(src.shape)} vs {tuple(val.shape)}"
                )
            with torch.no_grad():
                val.copy_(src)
        elif isinstance(val, torch.Generator):
            val.set_state(tensors[f"g.{key}"])
        elif isinstance(val, torch.optim.Optimizer):
            saved = scalars[f"o.{key}"]
            st = {}
            for pid, entry in saved["state"].items():
                st[int(pid)] = {
                    name: (tensors[f"o.{key}.{pid}.{name}"] if v == "__tensor__" else v)
                    for name, v in entry.items()
                }
            val.load_state_dict({"state": st, "param_groups": saved["param_groups"]})
        elif isinstance(val, list) and all(isinstance(v, torch.Tensor) for v in val):
            n = scalars[f"l.{key}"]
            state[key] = [tensors[f"l.{key}.{i}"].clone() for i in range(n)]
        else:
            state[key] = scalars[f"s.{key}"]


# -------------------------------------------------------------------- registry
METHODS: Registry[type[Distiller]] = Registry("method")


def register_method(cls: type[Distiller]) -> type[Distiller]:
    """Class decorator: register a Distiller subclass under ``cls.name``."""
    METHODS.add(
        cls.name, cls, help=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
    )
    return cls


def resolve_config(
    cls: type[Distiller],
    dataset: str | None,
    ipc: int | None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Config overrides for ``(dataset, ipc)`` from the class presets (``"*"`` matches any),
    most specific last, then the user's ``overrides``."""
    out: dict[str, Any] = {}
    for key in (("*", "*"), (dataset, "*"), ("*", ipc), (dataset, ipc)):
        out.update(cls.presets.get(key, {}))
    out.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return out


def create_method(
    name: str, *, dataset: str | None = None, ipc: int | None = None, **overrides: Any
) -> Distiller:
    """Build a registered method with its preset for ``(dataset, ipc)`` and user overrides."""
    from ddkit.methods import load_all

    load_all()
    cls = METHODS.get(name)
    return cls(**resolve_config(cls, dataset, ipc, overrides))


ProgressFn = Callable[[int, dict[str, float]], None]
