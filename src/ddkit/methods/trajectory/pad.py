"""PAD: DATM with aligned information, ``pad``.

Li, Guo, Zhao, Zhang, Cheng, Khaki, Zhang, Sajedi, Plataniotis, Wang & You, "Prioritize
Alignment in Dataset Distillation", 2024 (arXiv 2408.03360); authors' code
github.com/NUS-HPC-AI-Lab/PAD. Two filters on top of ``datm``:

* **Information extraction** -- the experts are trained on an easy-to-hard schedule of the real
  data (:class:`PADSchedule`). Every class's rows are ordered by a difficulty score (ddkit's
  pruning scores, :mod:`ddkit.methods.coreset.scores`, from proxy-network records cached by
  :mod:`ddkit.methods.coreset.records`); epoch ``e`` (0-based) uses the easiest fraction
  ``min(1, init_ratio + (1 - init_ratio) e / add_end_epoch)`` of each class up to
  ``add_end_epoch``, then every row up to ``rm_epoch_first``, then all but the easiest
  ``rm_easy_ratio_first`` up to ``rm_epoch_second``, then all but the easiest
  ``rm_easy_ratio_second`` (``buffer_CL.py``). Such experts are cached under a key that includes
  the schedule and the scores, and a folder without that schedule is refused: plain experts are
  never used as PAD experts.
* **Information embedding** -- the matching loss keeps only some parameters
  (:func:`keep_mask`): ``mask="error"`` drops the fraction ``mask_ratio`` of parameters with the
  smallest per-parameter error ``(θ_N − θ*)²`` in this iteration (``PAD.py``, "filter by loss");
  ``mask="depth"`` drops the first ``mask_ratio`` of the flat parameter vector, i.e. the
  shallowest layers (the "filter by depth" variant); the loss and its normaliser are sums over the
  kept parameters.

Choices where the authors' code and configs disagree with the paper: ``PAD.py`` switches the
loss filter on with ``loss_threshold_low``, which no config defines (``utils/cfg.py`` neither);
the configs set ``loss_ratio``, so here ``mask_ratio`` alone turns it on (0: off). The buffer
script's ``--add_hard``, ``--rm_easy`` and ``--max_ratio`` and the configs' ``ema_decay`` are
never read; they are not options here. The authors train experts with GSAM (sharpness-aware)
and GraNd scores from DeepCore; ddkit's experts use its plain SGD recipe and the score is a
choice (``difficulty``: EL2N by default) of proxy networks of the experts' architecture
(``proxy_model="auto"``, ``proxy_epochs``, ``proxy_seeds``). Per-class
fractions use each class's own size (the reference assumes 5,000 rows per class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from ddkit.claims import claim
from ddkit.data.dataset import ImageDataset
from ddkit.data.fingerprint import fingerprint
from ddkit.errors import ConfigError
from ddkit.methods.base import register_method
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, Auto, interval, presets_from
from ddkit.methods.trajectory.methods import (
    _DATM_TABLE,
    _SOURCES,
    _TEST_OVERRIDES,
    DATM,
    TEST_EXPERTS_CACHE,
    DATMConfig,
    _auto_cache_dir,
    await_experts,
    check_window,
)

if TYPE_CHECKING:
    from ddkit.methods.trajectory.experts import ExpertSettings

__all__ = [
    "PAD",
    "PADConfig",
    "PADSchedule",
    "ScheduleSettings",
    "keep_mask",
    "train_scheduled_experts",
]


@dataclass(frozen=True)
class ScheduleSettings:
    """The stages of PAD's data schedule (``buffer_CL.py``'s names; module docstring)."""

    init_ratio: float = 0.75
    add_end_epoch: int = 20
    rm_epoch_first: int = 40
    rm_epoch_second: int = 60
    rm_easy_ratio_first: float = 0.1
    rm_easy_ratio_second: float = 0.2

    def window(self, epoch: int) -> tuple[float, float]:
        """``(lo, hi)``: epoch ``epoch`` uses each class's rows whose easy-to-hard rank lies in
        ``[floor(lo n_c), floor(hi n_c))``."""
        if epoch <= self.add_end_epoch:
            frac = epoch / self.add_end_epoch if self.add_end_epoch > 0 else 1.0
            return 0.0, min(1.0, self.init_ratio + (1.0 - self.init_ratio) * frac)
        if epoch <= self.rm_epoch_first:
            return 0.0, 1.0
        if epoch <= self.rm_epoch_second:
            return self.rm_easy_ratio_first, 1.0
        return self.rm_easy_ratio_second, 1.0

    def schedule_settings(self) -> ScheduleSettings:
        """These settings alone (a config that inherits them gives a plain copy)."""
        return ScheduleSettings(**{f.name: getattr(self, f.name) for f in fields(ScheduleSettings)})


@dataclass(frozen=True)
class PADSchedule:
    """PAD's easy-to-hard data schedule for expert training (module docstring).

    ``hardness`` ``(N,)``: higher is harder; ``labels`` ``(N,)``: the rows' classes."""

    hardness: torch.Tensor
    labels: torch.Tensor
    settings: ScheduleSettings = ScheduleSettings()

    def window(self, epoch: int) -> tuple[float, float]:
        """:meth:`ScheduleSettings.window`."""
        return self.settings.window(epoch)

    def ranks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's easy-to-hard rank within its class (ties by row order) and its class size."""
        order = torch.argsort(self.hardness.double(), stable=True)
        order = order[torch.argsort(self.labels[order], stable=True)]  # class-major, easy first
        counts = torch.bincount(self.labels.long())
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(order)
        rank[order] = torch.arange(len(order)) - starts[self.labels[order].long()]
        return rank, counts[self.labels.long()]

    def rows(self, epoch: int) -> torch.Tensor:
        """The training rows of epoch ``epoch`` (ascending row indices)."""
        lo, hi = self.window(epoch)
        rank, n = self.ranks()
        keep = (rank >= torch.floor(lo * n)) & (rank < torch.floor(hi * n))
        return torch.nonzero(keep).flatten()

    def key(self) -> dict[str, Any]:
        """What identifies the schedule in cache keys and expert folders."""
        return {
            "scores": fingerprint(self.hardness.double(), self.labels.long()),
            **asdict(self.settings),
        }


def keep_mask(error: torch.Tensor, ratio: float, mode: str) -> torch.Tensor:
    """PAD's parameter selection: the boolean mask of parameters the matching loss keeps.

    ``error``: per-parameter squared error (flat). ``mode="error"`` drops the ``floor(ratio P)``
    parameters with the smallest error (ties by position); ``"depth"`` drops the first
    ``floor(ratio P)`` (the shallowest layers); ``"none"`` keeps all."""
    p = error.numel()
    drop = int(ratio * p) if mode != "none" else 0
    keep = torch.zeros(p, dtype=torch.bool, device=error.device)
    if mode == "depth":
        keep[drop:] = True
    else:
        keep[torch.argsort(error.flatten(), stable=True)[drop:]] = True
    return keep


def train_scheduled_experts(
    train: ImageDataset,
    schedule: PADSchedule,
    model: str,
    num_experts: int,
    epochs: int,
    out_dir: str | Path,
    settings: ExpertSettings | None = None,
):
    """Expert trajectories trained on ``schedule``'s rows, epoch by epoch, in the format of
    :func:`ddkit.methods.trajectory.experts.train_experts` (same seeds, snapshots, locks and
    resume), with the schedule recorded in ``experts.json``; ``settings``: how they are
    trained (:class:`~ddkit.methods.trajectory.experts.ExpertSettings`, its defaults when
    ``None``). Returns the loaded buffer."""
    from ddkit.io import atomic_write_json, ensure_writable_dir, read_json
    from ddkit.methods.trajectory import experts as ex

    settings = ex.ExpertSettings() if settings is None else settings
    root = ensure_writable_dir(out_dir)
    test = None
    if settings.zca:
        train, test = ex._whiten(root, train, None)
    recipe = ex._make_recipe(train, model, epochs, settings)
    meta = ex._folder_meta(recipe, train, settings.zca)
    ex._write_folder_meta(root, meta)
    mpath = root / ex.META_FILE
    atomic_write_json(mpath, {**read_json(mpath), "schedule": schedule.key()})
    for e in range(num_experts):
        if ex._finished(root, e, epochs):
            continue
        with claim(ex._lock_path(root, e)) as mine:
            if not mine or ex._finished(root, e, epochs):
                continue
            theta = None
            for epoch in range(ex._last_epoch(root, e) or 0, epochs):
                rows = schedule.rows(epoch)
                one = replace(
                    recipe, images=recipe.images[rows], labels=recipe.labels[rows], epochs=epoch + 1
                )
                theta = ex._train_group(root, [e], one, lambda msg: None)[0]  # one epoch
            ex._write_info(root, e, recipe, theta, test, lambda msg: None)
    return ex.load_experts(root)


@dataclass(frozen=True)
class PADConfig(DATMConfig, ScheduleSettings):
    """DATM's options plus PAD's schedule (:class:`ScheduleSettings`), scores and parameter
    mask (module docstring)."""

    difficulty: Literal["el2n", "grand", "forgetting", "margin"] = "el2n"
    # network whose training records give the scores (auto: the experts' model)
    proxy_model: str | Auto = "auto"
    proxy_epochs: int = 10
    proxy_seeds: int = 1
    scores_cache: str = "runs/scores"
    mask: Literal["error", "depth", "none"] = "error"
    mask_ratio: float = 0.5

    rules = {
        "proxy_epochs": AT_LEAST_ONE,
        "proxy_seeds": AT_LEAST_ONE,
        "init_ratio": interval(0, 1, low_open=True),
        "add_end_epoch": NON_NEGATIVE,
        "rm_epoch_first": NON_NEGATIVE,
        "rm_epoch_second": NON_NEGATIVE,
        "rm_easy_ratio_first": interval(0, 1, high_open=True),
        "rm_easy_ratio_second": interval(0, 1, high_open=True),
        "mask_ratio": interval(0, 1, high_open=True),
    }

    def check(self) -> None:
        super().check()
        if not self.add_end_epoch <= self.rm_epoch_first <= self.rm_epoch_second:
            raise ConfigError(
                "need add_end_epoch <= rm_epoch_first <= rm_epoch_second, got "
                f"{self.add_end_epoch}, {self.rm_epoch_first}, {self.rm_epoch_second}"
            )


def difficulty_schedule(cfg: PADConfig, train: ImageDataset) -> PADSchedule:
    """The schedule of ``cfg`` on ``train``: the chosen score from cached proxy records."""
    from ddkit.methods.coreset.records import ProxyRecipe, proxy_records
    from ddkit.methods.coreset.scores import hardness, score_named

    model = cfg.model if cfg.proxy_model == "auto" else cfg.proxy_model
    recipe = ProxyRecipe(model=model, epochs=cfg.proxy_epochs)
    records = proxy_records(
        train,
        recipe,
        list(range(cfg.proxy_seeds)),
        cache=cfg.scores_cache,
        device=train.images.device,
    )
    score = score_named(cfg.difficulty)
    values = hardness(score.compute(records, cfg.proxy_epochs), score.hard)
    return PADSchedule(values.cpu(), train.labels.cpu(), cfg.schedule_settings())


# CIFAR-10: the authors' README buffer command (ratios 0.75 / 0.1 / 0.2, epochs 20 / 40 / 60,
# 100 experts x 100 epochs) and configs/CIFAR-10/ConvIN/IPC*.yaml (loss_ratio: the mask). The
# CPU rows keep DATM's mnist5k / digits settings and fit the schedule into their 10 or 20 expert
# epochs (add to 30 %, full to 60 %, then drop 10 % and 20 % of the easiest rows).
_PAD_TABLE: dict[tuple[str, Any], dict[str, Any]] = {
    **{
        k: {
            **v,
            "init_ratio": 0.75,
            "add_end_epoch": 20,
            "rm_epoch_first": 40,
            "rm_epoch_second": 60,
            "mask_ratio": 0.0 if k[1] == 1 else 0.5,  # loss_ratio: 0 at IPC 1, else 0.5
        }
        for k, v in _DATM_TABLE.items()
        if k[0] == "cifar10"
    },
    ("digits", "*"): {
        **_DATM_TABLE[("digits", "*")],
        "add_end_epoch": 6,
        "rm_epoch_first": 12,
        "rm_epoch_second": 16,
    },
    ("mnist5k", "*"): {
        **_DATM_TABLE[("mnist5k", "*")],
        "add_end_epoch": 3,
        "rm_epoch_first": 6,
        "rm_epoch_second": 8,
    },
    **{k: v for k, v in _DATM_TABLE.items() if k[0] != "cifar10" and k[1] != "*"},
}


@register_method
class PAD(DATM):
    """PAD: DATM with easy-to-hard experts and a parameter mask on the matching loss (Li et al., 2024)."""

    name = "pad"
    Config = PADConfig
    presets = presets_from(
        _PAD_TABLE,
        {
            "cifar10": "PAD (arXiv 2408.03360) README buffer command and configs/CIFAR-10/ConvIN; "
            "DATM's values elsewhere",
            "digits": _SOURCES["digits"] + "; PAD's schedule scaled to 20 expert epochs",
            "mnist5k": "ddkit CPU setting (DATM's), PAD's schedule scaled to 10 expert epochs",
        },
    )
    test_overrides: ClassVar[dict[str, Any]] = {
        **_TEST_OVERRIDES,
        "proxy_epochs": 1,
        "scores_cache": TEST_EXPERTS_CACHE + "-scores",
        "add_end_epoch": 1,
        "rm_epoch_first": 1,
        "rm_epoch_second": 2,
    }

    def _experts(self, train: ImageDataset):
        from ddkit.methods.trajectory.experts import ExpertSettings

        c = self.config
        schedule = difficulty_schedule(c, train)
        self.schedule_ = schedule
        if c.experts_dir:
            buf = super()._experts(train)
            if buf.meta.get("schedule") != schedule.key():
                raise ConfigError(
                    f"experts in {c.experts_dir!r} were not trained on this PAD schedule; leave "
                    "experts_dir unset to train (and cache) PAD experts"
                )
            return buf
        check_window(c, c.expert_train_epochs)
        folder = _auto_cache_dir(c, train, {"pad_schedule": schedule.key()})
        return await_experts(
            lambda: train_scheduled_experts(
                train, schedule, c.model, c.num_experts, c.expert_train_epochs, folder,
                ExpertSettings.of_config(c),
            ),
            c.num_experts,
        )  # fmt: skip

    def _keep_mask(self):
        c = self.config
        if c.mask == "none" or c.mask_ratio == 0:
            return None
        return lambda error: keep_mask(error, c.mask_ratio, c.mask)

    def result(self):
        syn = super().result()
        syn.meta["pad_schedule"] = self.schedule_.key()
        return syn
