"""RTP: a dataset distilled into an addressable memory, learned by back-propagation through time.

Z. Deng and O. Russakovsky, "Remember the Past: Distilling Datasets into Addressable Memories
for Neural Networks", NeurIPS 2022 (arXiv:2206.02916). Instead of images, the set stores a small
memory shared by all classes -- ``m`` bases, each an image-sized tensor with a label part --
and one address (``m`` coefficients) per training example it emits. Recalling address ``a``
gives the example ``sum_j a_j * base_j`` and its label ``sum_j a_j * label_base_j``, so a
budget of ``ipc`` images per class can emit more than ``ipc`` examples per class, and bases are
shared across classes. Bases, label bases and addresses are learned like ``bptt``'s images:
through a randomly truncated unroll of a fresh network trained on the recalled examples, with
learned step sizes (:mod:`~ddkit.methods.performance.bptt`).

The stored tensors are ``rtp.bases`` ``(m, C, H, W)``, ``rtp.label_bases`` ``(m, K)`` and
``rtp.addresses`` ``(n, m)``; the saved set also holds the recalled examples (``images``, soft
``labels``) so it evaluates like any other, and :meth:`SyntheticSet.storage_bytes` counts only
the stored tensors. With ``bases="auto"`` the memory takes as many bases as fit the bytes of
``ipc`` images per class: ``m = floor(ipc K CHW / (CHW + K + n))``.

The addresses and label bases take their own Adam step (``lr_addresses``, default ``lr_img``):
Adam moves every entry by about its learning rate per step, and an address coefficient is about
a tenth of a pixel. ``label_scale`` is the starting logit of each example's own class, so it
sets how hard the recalled labels start; soft labels need long evaluation runs to pay off.

Deviations: the student is plain SGD by default (``inner``: the paper uses learned momentum) and
the unrolls are CPU-short (``bptt``'s defaults); recalled labels are logits whose softmax is the
student's cross-entropy target (the paper regresses on the recalled label vectors). The paper
initialises the memory at random; here memory, label bases and addresses start as the truncated
SVD of ``recall_factor * ipc`` real examples per class and their one-hot labels
(:func:`factorise_examples`), the best start a memory of ``m`` bases has: at equal bytes
``m`` is below the number of classes at IPC 1, so bases tied to classes would leave classes
without an example.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch

from ddkit.data.dataset import ImageDataset
from ddkit.data.synthetic import SyntheticSet
from ddkit.errors import ConfigError
from ddkit.meter import check_memory
from ddkit.methods.base import register_method
from ddkit.methods.config import AT_LEAST_ONE, POSITIVE, Auto, MethodConfig, Preset, also_for
from ddkit.methods.performance.bptt import ADAM_STUDENT, BPTT, CPU_SCALE, BPTTConfig

STORED = ("rtp.bases", "rtp.label_bases", "rtp.addresses")
# mnist5k IPC 10: the Adam student with small image and address steps (validation)
ADAM_STUDENT_SMALL_STEPS = {**ADAM_STUDENT, "lr_img": 0.001, "lr_addresses": 1e-5}


@dataclasses.dataclass(frozen=True)
class RTPConfig(BPTTConfig):
    """RTP hyper-parameters: ``bptt``'s, plus the memory's shape."""

    recall_factor: int = 2  # examples emitted per class = recall_factor * ipc
    bases: int | Auto = "auto"  # auto: as many as fit the bytes of ipc images per class
    # initial logit of a basis's own class (others 0): the recalled labels' hardness
    label_scale: float = 3.0
    # Adam on the addresses and label bases (auto: lr_img). Adam moves every entry by about
    # its lr per step, and addresses are ~10x smaller than pixels
    lr_addresses: float | Auto = "auto"

    rules = {
        "recall_factor": AT_LEAST_ONE,
        "bases": AT_LEAST_ONE,
        "lr_addresses": POSITIVE,
    }

    def check(self) -> None:
        super().check()
        if self.codec != "pixels":
            raise ConfigError(
                f"rtp stores its own memory of bases and addresses; codec must be pixels, got "
                f"{self.codec!r}"
            )


def memory_bases(ipc: int, num_classes: int, image_numel: int, recalled: int) -> int:
    """How many bases fit the bytes of ``ipc`` images per class once every basis carries a
    label part and every one of the ``recalled`` addresses one coefficient per basis."""
    return max(1, (ipc * num_classes * image_numel) // (image_numel + num_classes + recalled))


def factorise_examples(
    images: torch.Tensor, targets: torch.Tensor, bases: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best rank-``bases`` memory of real examples: the truncated SVD of the rows
    ``[image | w * target]`` (``w`` gives the label part the images' energy per example), split
    into addresses ``(n, bases)`` with unit mean row norm, image bases ``(bases, C, H, W)`` and
    label bases ``(bases, K)``, so that ``addresses @ bases`` recalls each image and its target
    as closely as ``bases`` components allow."""
    flat = images.flatten(1)
    w = (flat.norm() / targets.norm().clamp_min(1e-12)).item()
    u, s, vh = torch.linalg.svd(torch.cat([flat, w * targets], dim=1), full_matrices=False)
    addresses = u[:, :bases] * s[:bases]
    scale = addresses.norm(dim=1).mean().clamp_min(1e-12)
    memory = vh[:bases] * scale
    image_part, label_part = memory[:, : flat.shape[1]], memory[:, flat.shape[1] :] / w
    return (
        (addresses / scale).contiguous(),
        image_part.reshape(bases, *images.shape[1:]).contiguous(),
        label_part.contiguous(),
    )


@register_method
class RTP(BPTT):
    """rtp: a memory of shared bases and per-example addresses learned with BPTT (Deng & Russakovsky, NeurIPS 2022)."""

    name = "rtp"
    Config: ClassVar[type[MethodConfig]] = RTPConfig
    presets = also_for(
        CPU_SCALE
        + (
            Preset(
                "digits",
                1,
                {"label_scale": 30.0},
                "validation split: tune_rtp_digits_ipc1_label_scale*.json (3, 10, 30)",
            ),
            Preset(
                "mnist5k",
                10,
                ADAM_STUDENT_SMALL_STEPS,
                "validation split, 100 iterations: with an Adam student and small steps training "
                "no longer lowers the memory (tune_rtp_mnist5k_ipc10_{start,lr_addresses,inner_adam}"
                ".json)",
            ),
            Preset(
                "mnist5k",
                50,
                ADAM_STUDENT_SMALL_STEPS,
                "not tuned at IPC 50: the IPC-10 values carried over",
            ),
        ),
        "mnist5k",
        "mnist",
    )

    def init(
        self, train: ImageDataset, ipc: int, generator: torch.Generator, iterations: int
    ) -> None:
        super().init(train, ipc, generator, iterations)  # student network, step sizes, labels
        cfg, k = self.config, train.spec.num_classes
        n = cfg.recall_factor * ipc * k
        image_numel = math.prod(train.spec.shape)
        m = cfg.bases if cfg.bases != "auto" else memory_bases(ipc, k, image_numel, n)
        if m > n:
            raise ConfigError(
                f"bases={m} exceeds the {n} examples the memory emits (recall_factor * ipc * "
                "classes); lower bases or raise recall_factor"
            )
        check_memory(  # the recalled real examples, their targets and their SVD
            f"rtp's {n:,} recalled examples (recall_factor {cfg.recall_factor} x IPC {ipc} x "
            f"{k} classes)",
            4 * n * (3 * (image_numel + k) + m),
            "use a smaller recall_factor",
        )
        rows = train.sample_per_class(n // k, generator).flatten()
        targets = cfg.label_scale * torch.eye(k, device=train.images.device)[train.labels[rows]]
        addresses, bases, label_bases = factorise_examples(train.images[rows], targets, m)
        bases.requires_grad_(True)
        label_bases.requires_grad_(True)
        addresses.requires_grad_(True)
        self.state_.update({
            "images": bases, "label_bases": label_bases, "addresses": addresses,
            "opt": torch.optim.Adam(
                [
                    {"params": [bases]},
                    {"params": [label_bases, addresses], "lr": self.address_lr()},
                ],
                lr=cfg.lr_img,
            ),
        })  # fmt: skip

    def address_lr(self) -> float:
        """Adam's learning rate of the addresses and label bases (``lr_addresses``)."""
        cfg = self.config
        return float(cfg.lr_img if cfg.lr_addresses == "auto" else cfg.lr_addresses)

    def student_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        st = self.state_
        a, bases = st["addresses"], st["images"]
        images = (a @ bases.flatten(1)).view(len(a), *bases.shape[1:])
        return images, torch.softmax(a @ st["label_bases"], dim=1)

    def result(self) -> SyntheticSet:
        with torch.no_grad():
            images, targets = self.student_set()
        st = self.state_
        stored = {
            "rtp.bases": st["images"].detach().clone(),
            "rtp.label_bases": st["label_bases"].detach().clone(),
            "rtp.addresses": st["addresses"].detach().clone(),
        }
        meta = {"stored_tensors": list(STORED), "bases": len(st["images"]),
                "emitted_per_class": len(images) // self.train_.spec.num_classes}  # fmt: skip
        return SyntheticSet(
            images.clone(), targets.clone(), self.train_.spec, meta=meta, extras=stored
        )

    test_overrides: ClassVar[dict[str, Any]] = dict(BPTT.test_overrides)
