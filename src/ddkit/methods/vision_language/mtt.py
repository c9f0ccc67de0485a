"""Bi-trajectory matching for image-text pairs, with LoRS's learned similarity as an option.

* **Bi-trajectory matching** -- X. Wu, B. Zhang, Z. Deng and O. Russakovsky, "Vision-Language
  Dataset Distillation", TMLR 2024 (arXiv:2308.07545). Experts: dual encoders trained on the
  real pairs by the symmetric InfoNCE loss, their trainable parameters (both towers and heads)
  kept after every epoch. Each iteration draws an expert and a start epoch ``t <
  max_start_epoch``; a student starts from ``theta*_t`` and takes ``syn_steps`` SGD steps of the
  same loss on mini-batches of the synthetic pairs -- synthetic images and synthetic text, both
  learned -- with learned step sizes, one per encoder (as the authors' code learns an image and
  a text lr; recorded in ``meta['student_lr']``); the loss is the normalised parameter distance
  to the expert's later point ``theta*_{t+M}``, one term per encoder, summed:
  ``sum_side ||theta_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2`` (Wu et al., Eq. 3).
  The images, the text, the step size (and the similarity) are updated by SGD with momentum
  0.5, as MTT does.
* **The text's space** -- ``text_space="output"`` learns the synthetic text as the papers do:
  vectors in the frozen text tower's *output* space (Wu et al. and LoRS learn 768-d outputs of
  a frozen BERT), initialised from the chosen real captions' tower outputs, read by the text
  head alone (stored as ``text.features``, :mod:`ddkit.eval.retrieval`), at their own rate
  ``lr_feat``. It needs a text tower that never trains (``towers="pretrained"``, or an ``hf:``
  text tower with ``lora_rank=0``), else a one-line refusal. ``text_space="input"`` (the
  default) learns continuous token *embeddings* in the tower's frozen input-embedding space
  (:mod:`ddkit.models.text`), which every text tower can read, trainable or not.
* **LoRS** -- Y. Xu, Z. Lin, Y. Qiu, C. Lu and Y.-L. Li, "Low-Rank Similarity Mining for
  Multimodal Dataset Distillation", ICML 2024 (arXiv:2406.03793): ``similarity="learned"``
  replaces the student's one-hot contrastive targets by a learned target similarity over the
  synthetic pairs, ``S = diag(a) + (alpha / r) L R^T`` (``a`` initialised to ones, ``L`` to a
  normal draw, ``R`` to zeros, so ``S = I`` at the start), learned jointly through the unrolled
  student; the student's loss is the soft-target InfoNCE (``S`` in place of ``I``) and the set
  stores ``a``, ``L`` and ``R`` (the retrieval evaluation trains on ``S``).
* **Collapse diagnostics** -- RepBlend's symptoms of modality collapse (Zhang et al., NeurIPS
  2025, arXiv:2505.14705; :mod:`ddkit.methods.vision_language.diagnostics`): the synthetic
  pairs embedded, without gradients and in eval mode, by the first expert's last epoch (an
  encoder trained on the real pairs, as RepBlend embeds sets with a fine-tuned CLIP); measured
  at the start, every ``diagnose_every`` iterations (added to that step's metrics) and at the
  end, recorded in ``meta['collapse']`` (``final`` and the ``history``).

Deviations from the authors' code, each on purpose:

* the encoders are ddkit's (a ConvNet and a small text tower trained from scratch; with
  ``towers="pretrained"`` the same towers pretrained here on the data's attributes and frozen,
  heads trained, :mod:`ddkit.eval.towers`; or frozen local Hugging Face towers with heads and
  optional LoRA), where the papers use a pretrained NFNet / ViT and a frozen BERT; by default
  the text lives in the tower's *input* space (a frozen token table), so a trainable text
  tower's body is matched too; ``text_space="output"`` (frozen towers) is the papers' form;
* ``lr_feat`` (the output-space text's rate) is ddkit's choice, smaller than ``lr_txt`` so
  that a step moves the features by about as much, relative to their size, as ``lr_txt``
  moves the embeddings; untuned;
* experts are trained inside ``fit`` (``num_experts`` of them, ``expert_epochs`` each, SGD at
  ``expert_lr``: by default 0.5 from scratch and 0.02 over pretrained towers; plain by default,
  where the papers' buffers use momentum 0.9 and weight decay 5e-4, ``expert_momentum`` and
  ``expert_weight_decay``) from the run's seed and held in memory; ``expert_cache`` names a
  folder where they are kept, one safetensors file per (data, towers, expert settings, seeds),
  so runs of the same seed at other sizes reuse them;
* a fixed temperature (``temperature``), no learned logit scale; no augmentation of the
  synthetic images; LoRS's soft-target InfoNCE is the one loss offered with a learned ``S``
  (its code has BCE variants too);
* every default is ddkit's CPU-scale choice, not a paper's (their scale is Flickr30k / COCO with
  pretrained encoders on a GPU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from ddkit.data.fingerprint import fingerprint
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.eval.dry_run import SetupCost, is_estimating, record, time_part
from ddkit.eval.retrieval import (
    NEEDS_FROZEN_TEXT,
    RetrievalRecipe,
    caption_of_each,
    check_frozen_text,
    contrastive_loss,
    paired_set,
    similarity_matrix,
    train_pairs,
)
from ddkit.io import ensure_writable_dir, json_sha256, load_tensors, save_tensors
from ddkit.methods.base import register_method
from ddkit.methods.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, interval, one_of
from ddkit.methods.vision_language.base import EncoderConfig, PairedDistiller
from ddkit.methods.vision_language.diagnostics import collapse_metrics
from ddkit.models.text import HF_PREFIX, TrainableView
from ddkit.progress import Progress
from ddkit.rng import draw_seed

__all__ = ["VLMTT", "VLMTTConfig"]


#: the experts' SGD rate by towers where ``expert_lr`` is 0: from scratch, and over pretrained
#: frozen towers (heads only, the towers' outputs standardised), where a rate of 0.5 leaves the
#: heads' first epochs nearly untrained and the matched windows carry little (chosen on a
#: validation split of scenes-mnist5k: docs/benchmarks/vision-language.md)
EXPERT_RATES = {"scratch": 0.5, "pretrained": 0.02}


@dataclasses.dataclass(frozen=True)
class VLMTTConfig(EncoderConfig):
    """Bi-trajectory matching hyper-parameters (ddkit's CPU-scale defaults; module docstring)."""

    iterations: int = 200
    num_experts: int = 3  # expert trajectories trained in fit
    expert_epochs: int = 6  # epochs of each expert trajectory
    expert_lr: float = 0.0  # the experts' SGD rate (and the student's first); 0: by the towers
    expert_momentum: float = 0.0  # the experts' SGD momentum (the papers' buffers: 0.9)
    expert_weight_decay: float = 0.0  # the experts' weight decay (the papers' buffers: 5e-4)
    batch_real: int = 64  # real pairs per expert mini-batch
    syn_steps: int = 10  # student steps per iteration (N)
    match_epochs: int = 2  # expert epochs the student is matched against (M)
    max_start_epoch: int = 3  # start epochs drawn from [0, max_start_epoch)
    batch_syn: int = 0  # synthetic pairs per student step (0: all)
    lr_img: float = 5.0  # SGD lr of the synthetic images
    lr_txt: float = 1.0  # SGD lr of the synthetic text embeddings (larger ones drift off the words)
    text_space: str = "input"  # input (token embeddings) | output (text-tower outputs; frozen)
    lr_feat: float = 0.03  # SGD lr of the synthetic text features (text_space="output")
    lr_lr: float = 1e-4  # SGD lr of the student's learned step sizes (one per encoder)
    student_lr: float = 0.0  # the student's first step size (0: the experts' rate, the papers')
    similarity: str = "onehot"  # onehot (Wu et al.) | learned (LoRS)
    sim_rank: int = 5  # rank r of LoRS's low-rank part
    sim_alpha: float = 0.1  # LoRS's scale alpha of the low-rank part
    lr_sim: float = 1.0  # SGD lr of the similarity's factors
    expert_cache: str = ""  # a folder keeping trained experts (reused by runs of the same seed)
    diagnose_every: int = 10  # collapse diagnostics every this many iterations (0: start, end)

    rules = {
        "num_experts": AT_LEAST_ONE,
        "expert_epochs": AT_LEAST_ONE,
        "expert_lr": NON_NEGATIVE,
        "expert_momentum": interval(0.0, 1.0, high_open=True),
        "expert_weight_decay": NON_NEGATIVE,
        "batch_real": interval(2),
        "syn_steps": AT_LEAST_ONE,
        "match_epochs": AT_LEAST_ONE,
        "max_start_epoch": AT_LEAST_ONE,
        "batch_syn": NON_NEGATIVE,
        "lr_img": NON_NEGATIVE,
        "lr_txt": NON_NEGATIVE,
        "text_space": one_of("input", "output"),
        "lr_feat": NON_NEGATIVE,
        "lr_lr": NON_NEGATIVE,
        "student_lr": NON_NEGATIVE,
        "similarity": one_of("onehot", "learned"),
        "sim_rank": AT_LEAST_ONE,
        "sim_alpha": POSITIVE,
        "lr_sim": NON_NEGATIVE,
        "diagnose_every": NON_NEGATIVE,
    }

    def expert_rate(self) -> float:
        """The experts' SGD rate: ``expert_lr``, or where it is 0 the towers' (:data:`
        EXPERT_RATES`)."""
        return self.expert_lr or EXPERT_RATES[self.towers]

    def check(self) -> None:
        if self.max_start_epoch + self.match_epochs > self.expert_epochs:
            raise ConfigError(
                f"max_start_epoch ({self.max_start_epoch}) + match_epochs ({self.match_epochs}) "
                f"must be at most expert_epochs ({self.expert_epochs}): the target epoch must exist"
            )
        if self.batch_syn == 1:
            raise ConfigError("batch_syn must be 0 (all) or >= 2: InfoNCE needs a negative")
        frozen_hf = self.text_encoder.startswith(HF_PREFIX) and self.lora_rank == 0
        if self.text_space == "output" and self.towers != "pretrained" and not frozen_hf:
            raise ConfigError(f"text_space='output': {NEEDS_FROZEN_TEXT}")


@register_method
class VLMTT(PairedDistiller):
    """vl-mtt: bi-trajectory matching of image and text encoders on image-text pairs (Wu et al.,
    TMLR 2024); similarity="learned" adds LoRS's low-rank similarity (Xu et al., ICML 2024)."""

    name = "vl-mtt"
    Config = VLMTTConfig
    test_overrides: ClassVar[dict[str, Any]] = {
        "iterations": 2,
        "num_experts": 1,
        "expert_epochs": 2,
        "match_epochs": 1,
        "max_start_epoch": 1,
        "syn_steps": 2,
        "embed_dim": 8,
        "token_dim": 8,
        "text_width": 16,
        "image_encoder": "convnet2-w8",
    }

    # ------------------------------------------------------------------ setup
    def init(self, train: Any, ipc: int, generator: torch.Generator, iterations: int) -> None:
        cfg = self.config
        model, real = self.prepare(train, draw_seed(generator))
        if cfg.text_space == "output":
            check_frozen_text(model)
        self.model_, self.view_ = model, TrainableView(model)
        seeds = [draw_seed(generator) for _ in range(cfg.num_experts)]
        self.experts_ = self._experts(train, real, seeds)
        rows = torch.randperm(len(train), generator=generator)[:ipc]
        captions = caption_of_each(train, rows, generator)
        with torch.no_grad():
            emb, mask = model.text_inputs(train.captions[captions])
            text = emb if cfg.text_space == "input" else model.text(emb, mask)
        self.mask_ = mask
        self.state_["images"] = train.images[rows].clone().requires_grad_(True)
        self.state_["text"] = text.clone().requires_grad_(True)
        dev = train.images.device
        rate = cfg.student_lr or cfg.expert_rate()
        self.state_["syn_lr"] = torch.full((2,), rate, device=dev).requires_grad_(True)
        learned = [self.state_["images"], self.state_["text"], self.state_["syn_lr"]]
        rates = [cfg.lr_img, cfg.lr_txt if cfg.text_space == "input" else cfg.lr_feat, cfg.lr_lr]
        if cfg.similarity == "learned":
            self.state_["sim_diag"] = torch.ones(ipc, device=dev).requires_grad_(True)
            left = torch.randn(ipc, cfg.sim_rank, generator=generator).to(dev)
            self.state_["sim_left"] = left.requires_grad_(True)
            right = torch.zeros(ipc, cfg.sim_rank, device=dev)
            self.state_["sim_right"] = right.requires_grad_(True)
            learned += [self.state_[k] for k in ("sim_diag", "sim_left", "sim_right")]
            rates += [cfg.lr_sim] * 3
        self.state_["opt"] = torch.optim.SGD(
            [{"params": [p], "lr": lr} for p, lr in zip(learned, rates)], lr=1.0, momentum=0.5
        )
        self.rows_ = rows
        self.state_["collapse"] = [{"iteration": 0, **self.collapse_now()}]

    def _experts(self, train: Any, real: Any, seeds: list[int]) -> list[torch.Tensor]:
        """The expert trajectories of ``seeds``: read from ``expert_cache`` when a file there
        was made with the same data, towers, expert settings and seeds, else trained (their
        epochs reported as the fit's progress) and written there; in a dry run, costed and
        stood in for (:meth:`_stand_in_experts`)."""
        cfg = self.config
        what = f"{len(seeds)} vl-mtt experts x {cfg.expert_epochs} epochs"
        path = self._expert_file(train, seeds) if cfg.expert_cache else None
        if path is not None and path.is_file():
            saved = load_tensors(path)
            record(SetupCost(what, 0.0))
            return [saved[f"expert.{i}"].to(real.images.device) for i in range(len(seeds))]
        if is_estimating():
            return self._stand_in_experts(real, seeds, what)
        bar = Progress("vl-mtt experts", len(seeds) * cfg.expert_epochs, unit="epochs",
                       setting=self.setup_progress_)  # fmt: skip
        experts = [self._expert(real, s, on_epoch=lambda _: bar.update(1)) for s in seeds]
        bar.close()
        if path is not None:
            ensure_writable_dir(path.parent)
            save_tensors(path, {f"expert.{i}": t.cpu() for i, t in enumerate(experts)})
        return experts

    def _expert_file(self, train: Any, seeds: list[int]) -> Path:
        """The file in ``expert_cache`` of the experts of ``seeds`` on ``train``."""
        cfg = self.config
        key = {
            "data": fingerprint(repr(train.spec), train.images, train.captions),
            "encoder": self.encoder_.to_dict(),
            "seeds": seeds,
            "expert_epochs": cfg.expert_epochs,
            "expert_lr": cfg.expert_rate(),
            "batch_real": cfg.batch_real,
            "temperature": cfg.temperature,
        }
        if cfg.expert_momentum or cfg.expert_weight_decay:  # (the plain-SGD key is as it was)
            key |= {"momentum": cfg.expert_momentum, "weight_decay": cfg.expert_weight_decay}
        if cfg.towers == "pretrained":  # (the from-scratch key is as it was)
            key["towers"] = self.tower_recipe().to_dict()
        return Path(cfg.expert_cache) / f"vl-experts-{json_sha256(key)[:16]}.safetensors"

    def _stand_in_experts(self, real: Any, seeds: list[int], what: str) -> list[torch.Tensor]:
        """A dry run's experts: one expert's epoch timed on a part of the captions
        (:func:`~ddkit.eval.dry_run.time_part`), scaled to every expert's epochs and recorded;
        each trajectory stands in as the start moved by that part's change per epoch."""
        cfg = self.config

        def one_pass(n: int) -> torch.Tensor:
            return self._expert(real.first(n), seeds[0], epochs=1)

        part = time_part(one_pass, len(real), cfg.batch_real)
        epochs = len(seeds) * cfg.expert_epochs
        timed = f"one epoch of one expert, {part.text()}, x {epochs} epochs"
        record(SetupCost(what, part.pass_seconds * epochs, timed, part.spent))
        start, moved = part.result[0], part.result[1] - part.result[0]
        steps = torch.arange(cfg.expert_epochs + 1, dtype=start.dtype, device=start.device)
        return [start + steps[:, None] * moved] * len(seeds)

    def _expert(
        self,
        real,
        seed: int,
        *,
        epochs: int | None = None,
        on_epoch: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """One expert trajectory: the trainable parameters ``(epochs + 1, P)`` (default
        ``expert_epochs``) of a dual encoder initialised under ``seed`` and trained on the
        real pairs; ``on_epoch(epoch)`` after each epoch."""
        cfg = self.config
        model = self.build_encoder(seed)
        view = TrainableView(model)
        snaps = [view.flatten()]
        recipe = RetrievalRecipe(
            epochs=cfg.expert_epochs if epochs is None else epochs, optimizer="sgd",
            lr=cfg.expert_rate(), momentum=cfg.expert_momentum,
            weight_decay=cfg.expert_weight_decay,
            batch=cfg.batch_real, temperature=cfg.temperature, runs=1,
        )  # fmt: skip

        def snapshot(epoch: int) -> None:
            snaps.append(view.flatten())
            if on_epoch is not None:
                on_epoch(epoch)

        g = torch.Generator().manual_seed(seed)
        train_pairs(model, real, recipe, g, on_epoch=snapshot)
        return torch.stack(snaps)

    def target_similarity(self) -> torch.Tensor | None:
        """LoRS's ``S`` over the synthetic pairs (``None``: one-hot targets)."""
        if self.config.similarity != "learned":
            return None
        s = self.state_
        return similarity_matrix(
            s["sim_diag"], s["sim_left"], s["sim_right"], self.config.sim_alpha
        )

    # ------------------------------------------------------------------ one iteration
    def step(self, iteration: int) -> dict[str, float]:
        cfg, s = self.config, self.state_
        g: torch.Generator = s["generator"]
        e = int(torch.randint(len(self.experts_), (1,), generator=g))
        t = int(torch.randint(cfg.max_start_epoch, (1,), generator=g))
        start, target = self.experts_[e][t], self.experts_[e][t + cfg.match_epochs]
        n = len(s["images"])
        size = n if cfg.batch_syn == 0 else min(cfg.batch_syn, n)
        batches = [torch.randperm(n, generator=g)[:size] for _ in range(cfg.syn_steps)]
        terms = self.matching_loss(start, target, batches)
        loss = terms.sum()
        if not bool(torch.isfinite(loss)):
            raise ConfigError(
                f"{self.name} diverged at iteration {iteration} (the matching loss is not "
                "finite); lower lr_img, lr_txt, lr_lr or lr_sim"
            )
        opt: torch.optim.Optimizer = s["opt"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_image, lr_text = s["syn_lr"].detach().tolist()
        metrics = {"loss": float(loss.detach()), "syn_lr_image": lr_image, "syn_lr_text": lr_text}
        metrics |= dict(zip(("loss_image", "loss_text"), terms.detach().tolist()))
        every = cfg.diagnose_every
        if every and (iteration + 1) % every == 0:
            collapse = self.collapse_now()
            s["collapse"].append({"iteration": iteration + 1, **collapse})
            metrics.update(collapse)
        return metrics

    def collapse_now(self) -> dict[str, float]:
        """RepBlend's collapse diagnostics of the synthetic pairs now
        (:func:`~ddkit.methods.vision_language.diagnostics.collapse_metrics`), embedded without
        gradients by the first expert's last epoch, the model in eval mode (no buffer moves)."""
        s, model = self.state_, self.model_
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                a, b = self.view_(self.experts_[0][-1], s["images"], **self.text_of(slice(None)))
        finally:
            model.train(was)
        return collapse_metrics(a, b)

    def text_of(self, rows: Any) -> dict[str, torch.Tensor]:
        """The synthetic captions ``rows`` as the dual encoder's keywords: input embeddings and
        their mask, or output-space features (``text_space``)."""
        text = self.state_["text"][rows]
        if self.config.text_space == "output":
            return {"features": text}
        return {"emb": text, "mask": self.mask_[rows]}

    def matching_loss(
        self, start: torch.Tensor, target: torch.Tensor, batches: list[torch.Tensor]
    ) -> torch.Tensor:
        """Wu et al.'s bi-trajectory loss: the student unrolled from ``start`` over ``batches``
        of synthetic pairs, its normalised distance to ``target`` per encoder (image, text;
        the loss is their sum)."""
        s, view = self.state_, self.view_
        sim = self.target_similarity()
        theta = start.clone().requires_grad_(True)
        image = view.image_mask
        lr = torch.where(image, s["syn_lr"][0], s["syn_lr"][1])  # one step size per encoder
        for rows in batches:
            a, b = view(theta, s["images"][rows], **self.text_of(rows))
            part = None if sim is None else sim[rows][:, rows]
            inner = contrastive_loss(a, b, self.config.temperature, part)
            grad = torch.autograd.grad(inner, theta, create_graph=True)[0]
            theta = theta - lr * grad
        terms = []
        for side in (image, ~image):
            moved = ((start - target)[side] ** 2).sum().clamp_min(1e-12)
            terms.append(((theta - target)[side] ** 2).sum() / moved)
        return torch.stack(terms)

    # ------------------------------------------------------------------ output
    def result(self) -> SyntheticSet:
        s, cfg = self.state_, self.config
        similarity = None
        if cfg.similarity == "learned":
            similarity = (s["sim_diag"], s["sim_left"], s["sim_right"], cfg.sim_alpha)
        meta = {
            "student_lr": dict(zip(("image", "text"), s["syn_lr"].detach().tolist())),
            "similarity": cfg.similarity,
            "initial_rows": self.rows_.tolist(),
            "collapse": {"final": self.collapse_now(), "history": list(s["collapse"])},
            **self.towers_meta(),
        }
        return paired_set(
            s["images"], self.train_.spec, self.encoder_, **self.text_of(slice(None)),
            similarity=similarity, tokenizer=self.train_.tokenizer, meta=meta,
        )  # fmt: skip
