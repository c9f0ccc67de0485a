"""Parameterisations ("codecs"): what a synthetic set stores, and how it becomes training images.

A method that optimises images can optimise a codec's stored tensor instead: the ``codec``
option (:class:`CodecConfig`) of the matching methods (``dm``, ``dc``, ``dsa``, ``idc``, whose
default is ``auto``; IDM has multi-formation built in), the trajectory methods (``mtt``,
``tesla``, ``datm``) and the performance-matching methods (``bptt``, ``kip``, ``frepo``). The
codec decodes it into training images at every step (differentiably), and the saved set holds
the decoded images for evaluation plus the stored tensors, which are what its bytes count; a
method that learns labels (soft or regression) keeps one per decoded image, and those count too. A codec is given
the byte budget of ``ipc`` plain images (and hard labels) per class and emits as many images
per class as fit in it.

* ``pixels`` -- the images themselves.
* ``formation:F`` -- multi-formation (IDC: Kim et al., ICML 2022): each stored image holds an
  ``F x F`` grid of tiles, each upsampled to a training image, so ``ipc`` stored images give
  ``ipc F^2`` training images per class.
* ``fred:R`` -- frequency domain (FreD: Shin et al., NeurIPS 2023): each image keeps only the
  fraction ``R`` of its 2-D DCT coefficients (orthonormal DCT-II per channel) at the positions
  where the real training images' coefficients carry the most energy, so about ``ipc / R`` images fit per
  class; decoding zero-fills the rest and inverts the DCT. The positions (a mask shared by the
  whole set) are stored too. Deviations from FreD: the positions are chosen by the mean
  squared coefficient of the real data at each position (FreD ranks by explained variance;
  the mean square also keeps the images' mean, which normalised backgrounds need) and stay
  fixed; no per-dataset tuned ratios.
* ``haba:H`` -- factorisation (HaBa: Liu, Wang, Yang & Wang, NeurIPS 2022): per class a few
  *bases* (images) and, shared by all classes, ``H`` small *hallucinator* networks (a 3x3
  convolution, a learned scale and shift, tanh, a 3x3 convolution back, added to the base);
  every base through every hallucinator gives ``H`` training images. The hallucinators' weights
  are stored too, so fewer bases fit than plain images (none at IPC 1 on small images: the
  codec then says so). The hallucinators' weights are stored divided by ``weight_scale``
  (0.1), so the objective's image optimiser moves them ``weight_scale`` times as far as their
  stored numbers under Adam and ``weight_scale**2`` as far under SGD -- HaBa gives them an
  optimiser of their own; sharing the pixels' step at scale 1, a weight's gradient sums over
  every emitted image and the hallucinators blew the images far off their bases
  (``benchmarks/probe_haba.py``). Sets saved before the scale existed decode at scale 1.
  Deviations from HaBa: no adversarial contrastive term keeping the
  hallucinators apart (their encoders start random and their decoders at zero, so each starts
  as the identity); the emitted images' hard labels are counted per image.
* ``latent:D`` -- latent codes through a frozen decoder (GLaD: Cazenavette et al., CVPR 2023,
  optimise a pretrained generator's latents with any matching objective). No pretrained
  generator is at hand, so the codec trains a small convolutional autoencoder on the real
  training images (seed 0, so every run shares it) and stores ``D`` numbers per image plus the
  decoder's weights, which count against the budget (GLaD ships a public generator and counts
  none of it). The autoencoder is an artifact: trained once per dataset and settings and kept in a
  folder (:mod:`ddkit.methods.generative.autoencoder`). Codes start as the encoder's codes of
  real images. Deviations: a deterministic
  autoencoder instead of a GAN or VAE, trained briefly (2,000 Adam steps), no intermediate-layer
  latents.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from ddkit.data.dataset import ImageDataset
from ddkit.data.spec import DatasetSpec
from ddkit.data.synthetic import STORED_IMAGES, SyntheticSet
from ddkit.errors import ConfigError
from ddkit.methods.common import class_labels, initial_images
from ddkit.methods.config import AUTO, MethodConfig, Rule
from ddkit.methods.matching.formation import decode as formation_decode
from ddkit.methods.matching.formation import encode_real
from ddkit.rng import seeded_global_rng

LABEL_BYTES = 8  # one int64 hard label


def label_bytes(vectors: bool, num_classes: int) -> int:
    """Bytes of one stored label: a float32 vector (soft or learned) or a hard label."""
    return 4 * num_classes if vectors else LABEL_BYTES


def image_bytes(spec: DatasetSpec) -> int:
    """Bytes of one float32 image of ``spec``."""
    return 4 * math.prod(spec.shape)


class Codec:
    """Stored tensor <-> training images. Subclasses set ``name`` and implement the methods.

    ``label_bytes`` is what one training image's label costs (:func:`label_bytes`): the budget
    of ``ipc`` plain images per class includes their labels of the same kind, and every emitted
    image pays for its own."""

    name = "codec"
    label_bytes = LABEL_BYTES

    def fit(self, train: ImageDataset) -> None:
        """Learn anything shared from the real training images (default: nothing)."""

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        """Training images per class that fit the bytes of ``ipc`` plain images per class."""
        raise NotImplementedError

    def real_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        """Real images per class :meth:`encode` needs to start from."""
        return self.emitted_per_class(ipc, spec)

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The stored tensor that starts from real ``images`` (class-major); anything random
        in it is drawn from ``generator``."""
        raise NotImplementedError

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        """Training images ``(N, C, H, W)``, class-major, differentiable in ``stored``."""
        raise NotImplementedError

    def to_set(
        self, stored: torch.Tensor, spec: DatasetSpec, ipc: int, **fields: Any
    ) -> SyntheticSet:
        """The saved set: the decoded images, and what is stored. ``fields`` go to
        :class:`SyntheticSet` (``labels``, one per decoded image -- hard class labels by default
        --, ``lr``, ``meta``, ``extras``, ``regression``)."""
        with torch.no_grad():
            images = self.decode(stored).cpu().float().clone()
        k = spec.num_classes
        fields.setdefault("labels", class_labels(k, len(images) // k))
        syn = SyntheticSet(images, spec=spec, **fields)
        syn.meta["codec"] = self.spec_string
        return syn

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        """Rebuild what :meth:`fit` learned from a saved set's ``meta`` and ``extras`` and
        return its stored tensor (``None``: the set stores its images themselves)."""
        return None

    @staticmethod
    def _with_stored(
        syn: SyntheticSet, tensors: dict[str, torch.Tensor], **meta: Any
    ) -> SyntheticSet:
        """Attach the tensors a set is decoded from; its bytes then count those and its labels."""
        for key, t in tensors.items():
            t = t.detach().cpu()
            syn.extras[key] = (t.float() if t.is_floating_point() else t).clone()
        per_class = len(syn) // syn.spec.num_classes
        syn.meta.update({"stored_tensors": [*tensors, "labels"], "emitted_per_class": per_class,
                         **meta})  # fmt: skip
        return syn

    @property
    def spec_string(self) -> str:
        return self.name


class Pixels(Codec):
    """The images themselves."""

    name = "pixels"

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        return ipc

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.clone()

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        return stored


class Formation(Codec):
    """Multi-formation with ``factor x factor`` tiles per stored image (module docstring)."""

    name = "formation"

    def __init__(self, factor: int) -> None:
        if factor < 1:
            raise ConfigError(f"formation factor must be >= 1, got {factor}")
        self.factor = int(factor)

    @property
    def spec_string(self) -> str:
        return f"formation:{self.factor}"

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        if min(spec.image_size) < self.factor:
            raise ConfigError(f"factor {self.factor} is larger than the images {spec.image_size}")
        return ipc * self.factor**2

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return encode_real(images, self.factor)

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        return formation_decode(stored, self.factor)

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        return extras.get(STORED_IMAGES) if self.factor > 1 else None

    def to_set(
        self, stored: torch.Tensor, spec: DatasetSpec, ipc: int, **fields: Any
    ) -> SyntheticSet:
        syn = super().to_set(stored, spec, ipc, **fields)
        syn.meta.update({"formation_factor": self.factor, "stored_ipc": ipc,
                         "stored_images": len(stored), "decoded_ipc": ipc * self.factor**2})  # fmt: skip
        if self.factor > 1:
            syn.extras[STORED_IMAGES] = stored.detach().cpu().float().clone()
        return syn


def dct_matrix(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (``D @ x`` transforms a length-``n`` signal;
    ``D.T`` inverts it)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


class Frequency(Codec):
    """FreD-style frequency-domain storage keeping a fraction ``keep`` of DCT coefficients."""

    name = "fred"

    def __init__(self, keep: float) -> None:
        if not 0 < keep <= 1:
            raise ConfigError(f"fred keeps a fraction of coefficients in (0, 1], got {keep}")
        self.keep = float(keep)
        self.index_: torch.Tensor | None = None  # (C, kept) flat positions per channel

    @property
    def spec_string(self) -> str:
        return f"fred:{self.keep:g}"

    def _kept(self, spec: DatasetSpec) -> int:
        h, w = spec.image_size
        return max(1, round(self.keep * h * w))

    def fit(self, train: ImageDataset) -> None:
        self._set_shape(train.spec)
        coefficients = self._forward(train.images)  # (N, C, H, W)
        energy = coefficients.flatten(2).pow(2).mean(0)  # (C, H*W)
        kept = self._kept(train.spec)
        self.index_ = energy.topk(kept, dim=1).indices.sort(dim=1).values

    def _set_shape(self, spec: DatasetSpec) -> None:
        h, w = spec.image_size
        self.dh_, self.dw_ = dct_matrix(h), dct_matrix(w)
        self.shape_ = spec.shape

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        self._set_shape(spec)
        self.index_ = extras["fred.positions"].long()
        return extras["fred.coefficients"]

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        k, c = spec.num_classes, spec.channels
        budget = k * ipc * (image_bytes(spec) + self.label_bytes) - c * self._kept(spec) * 4
        per_image = c * self._kept(spec) * 4 + self.label_bytes
        n = budget // (k * per_image)
        if n < 1:
            raise ConfigError(f"fred:{self.keep:g} leaves no room for an image at IPC {ipc}")
        return int(n)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.dh_ @ images @ self.dw_.T

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flat = self._forward(images).flatten(2)  # (N, C, H*W)
        return torch.gather(flat, 2, self.index_.expand(len(images), -1, -1)).clone()

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        n = len(stored)
        c, h, w = self.shape_
        full = stored.new_zeros(n, c, h * w)
        full = full.scatter(2, self.index_.expand(n, -1, -1), stored)
        return self.dh_.T @ full.view(n, c, h, w) @ self.dw_

    def to_set(
        self, stored: torch.Tensor, spec: DatasetSpec, ipc: int, **fields: Any
    ) -> SyntheticSet:
        syn = super().to_set(stored, spec, ipc, **fields)
        tensors = {"fred.coefficients": stored, "fred.positions": self.index_.to(torch.int32)}
        return self._with_stored(syn, tensors, kept_coefficients=int(self.index_.shape[1]))


class Factorisation(Codec):
    """HaBa-style factorisation: bases x hallucinators (module docstring)."""

    name = "haba"
    width = 4  # channels inside a hallucinator
    weight_scale = 0.1  # hallucinator weights = weight_scale x their stored numbers

    def __init__(self, hallucinators: int) -> None:
        if hallucinators < 1:
            raise ConfigError(f"haba needs at least one hallucinator, got {hallucinators}")
        self.h = int(hallucinators)

    @property
    def spec_string(self) -> str:
        return f"haba:{self.h}"

    def _sizes(self, channels: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the hallucinators' parameters, all ``h`` stacked (grouped convolutions)."""
        h, c, w = self.h, channels, self.width
        return {"enc": (h * w, c, 3, 3), "scale": (h * w,), "shift": (h * w,),
                "dec": (h * c, w, 3, 3), "dec_bias": (h * c,)}  # fmt: skip

    def _num_params(self, channels: int) -> int:
        return sum(math.prod(v) for v in self._sizes(channels).values())

    def bases_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        k = spec.num_classes
        budget = k * ipc * (image_bytes(spec) + self.label_bytes)
        budget -= 4 * self._num_params(spec.channels)
        return int(budget // (k * (image_bytes(spec) + self.h * self.label_bytes)))

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        b = self.bases_per_class(ipc, spec)
        if b < 1:
            raise ConfigError(
                f"haba:{self.h} does not fit the bytes of IPC {ipc}: its hallucinators alone "
                f"take {4 * self._num_params(spec.channels)} bytes; use a larger IPC or fewer"
            )
        return b * self.h

    def real_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        return self.emitted_per_class(ipc, spec) // self.h  # the bases; refuses what cannot fit

    def fit(self, train: ImageDataset) -> None:
        self.shape_ = train.spec.shape

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        self.shape_ = spec.shape
        self.weight_scale = float(meta.get("hallucinator_weight_scale", 1.0))  # older sets: 1
        return extras["haba.stored"]

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Bases start as the real images; hallucinators as the identity (their decoder is
        zero) with random encoders, so they differ as soon as they learn."""
        c = self.shape_[0]
        sizes = self._sizes(c)
        enc = torch.randn(sizes["enc"], generator=generator) / math.sqrt(9 * c)
        weights = [enc.flatten(), torch.ones(sizes["scale"]), torch.zeros(sizes["shift"]),
                   torch.zeros(sizes["dec"]).flatten(), torch.zeros(sizes["dec_bias"])]  # fmt: skip
        stored = [images.flatten(), *(w / self.weight_scale for w in weights)]
        return torch.cat([p.to(images.dtype) for p in stored])

    def _unpack(self, stored: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        c = self.shape_[0]
        sizes = self._sizes(c)
        n_params = self._num_params(c)
        bases = stored[: len(stored) - n_params].view(-1, *self.shape_)
        params, start = {}, len(stored) - n_params
        for key, shape in sizes.items():
            n = math.prod(shape)
            params[key] = self.weight_scale * stored[start : start + n].view(shape)
            start += n
        return bases, params

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        """Every base through every hallucinator: ``base + dec(tanh(scale * enc(base) +
        shift))``, base-major (each base's ``h`` images together, so classes stay in order)."""
        bases, p = self._unpack(stored)
        n, (c, hh, ww) = len(bases), self.shape_
        x = bases.repeat(1, self.h, 1, 1)  # (N, h*C, H, W): one copy per hallucinator
        f = torch.nn.functional.conv2d(x, p["enc"], padding=1, groups=self.h)
        f = torch.tanh(f * p["scale"].view(1, -1, 1, 1) + p["shift"].view(1, -1, 1, 1))
        out = torch.nn.functional.conv2d(f, p["dec"], p["dec_bias"], padding=1, groups=self.h)
        return (x + out).view(n * self.h, c, hh, ww)

    def to_set(
        self, stored: torch.Tensor, spec: DatasetSpec, ipc: int, **fields: Any
    ) -> SyntheticSet:
        syn = super().to_set(stored, spec, ipc, **fields)
        bases, _ = self._unpack(stored.detach())
        return self._with_stored(syn, {"haba.stored": stored}, hallucinators=self.h,
                                 bases_per_class=len(bases) // spec.num_classes,
                                 hallucinator_weight_scale=self.weight_scale)  # fmt: skip


class Latent(Codec):
    """Latent codes through a frozen decoder that ddkit trains on the real images (module
    docstring): ``latent:D`` stores ``D`` numbers per image plus the decoder's weights."""

    name = "latent"
    steps = 2000  # autoencoder training steps (Adam, lr 1e-3, batch 128, seed 0)
    width = 16  # channels after the decoder's first layer (halved by the second)

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ConfigError(f"latent codes need at least one dimension, got {dim}")
        self.dim = int(dim)

    @property
    def spec_string(self) -> str:
        return f"latent:{self.dim}"

    def _networks(self, spec: DatasetSpec) -> tuple[nn.Module, nn.Module]:
        """A fresh encoder and decoder for ``spec``'s images, initialised from seed 0."""
        c, (h, w), m = spec.channels, spec.image_size, self.width
        if h % 4 or w % 4:
            raise ConfigError(f"latent codecs need image sides divisible by 4, got {h}x{w}")
        small = m * (h // 4) * (w // 4)
        with seeded_global_rng(0):  # layer initialisers draw from the global RNG
            encoder = nn.Sequential(
                nn.Conv2d(c, m // 2, 3, 2, 1), nn.ReLU(), nn.Conv2d(m // 2, m, 3, 2, 1),
                nn.ReLU(), nn.Flatten(), nn.Linear(small, self.dim),
            )  # fmt: skip
            decoder = nn.Sequential(
                nn.Linear(self.dim, small), nn.ReLU(), nn.Unflatten(1, (m, h // 4, w // 4)),
                nn.ConvTranspose2d(m, m // 2, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(m // 2, c, 4, 2, 1),
            )  # fmt: skip
        return encoder, decoder

    def _decoder_bytes(self, spec: DatasetSpec) -> int:
        return 4 * sum(p.numel() for p in self._networks(spec)[1].parameters())

    def emitted_per_class(self, ipc: int, spec: DatasetSpec) -> int:
        k = spec.num_classes
        budget = k * ipc * (image_bytes(spec) + self.label_bytes) - self._decoder_bytes(spec)
        n = budget // (k * (4 * self.dim + self.label_bytes))
        if n < 1:
            raise ConfigError(
                f"latent:{self.dim} does not fit the bytes of IPC {ipc}: its decoder alone "
                f"takes {self._decoder_bytes(spec)} bytes; use a larger IPC or a smaller D"
            )
        return int(n)

    def fit(self, train: ImageDataset) -> None:
        """The autoencoder of ``train``'s images (seed 0: every run shares it), loaded from its
        artifact folder when one was trained before with the same data and settings
        (:mod:`ddkit.methods.generative.autoencoder`); its decoder is frozen."""
        from ddkit.methods.generative.autoencoder import obtain_autoencoder

        self.encoder_, self.decoder_ = self._networks(train.spec)
        settings = {"latent_dim": self.dim, "width": self.width, "steps": self.steps,
                    "seed": 0, "lr": 1e-3, "batch": 128}  # fmt: skip
        meta = obtain_autoencoder(
            train, settings, {"encoder": self.encoder_, "decoder": self.decoder_},
            lambda: self._train(train),
        )  # fmt: skip
        self.reconstruction_mse_ = float(meta["reconstruction_mse"])
        self.decoder_.requires_grad_(False).eval()

    def _train(self, train: ImageDataset) -> dict[str, float]:
        """``steps`` Adam steps (lr 1e-3, batches of 128, shuffled from seed 0) on the
        reconstruction error; returns the final error on the first 1,024 images."""
        g = torch.Generator().manual_seed(0)
        params = [*self.encoder_.parameters(), *self.decoder_.parameters()]
        opt = torch.optim.Adam(params, lr=1e-3)
        x = train.images
        epochs = (torch.randperm(len(x), generator=g).split(128) for _ in itertools.count())
        for idx in itertools.islice(itertools.chain.from_iterable(epochs), self.steps):
            loss = (self.decoder_(self.encoder_(x[idx])) - x[idx]).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            mse = (self.decoder_(self.encoder_(x[:1024])) - x[:1024]).pow(2).mean()
        return {"reconstruction_mse": float(mse)}

    def restore(
        self, spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        self.width = int(meta.get("latent_width", self.width))
        _, self.decoder_ = self._networks(spec)
        nn.utils.vector_to_parameters(extras["latent.decoder"], self.decoder_.parameters())
        self.decoder_.requires_grad_(False).eval()
        return extras["latent.codes"]

    def encode(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder_(images.float()).to(images.dtype)

    def decode(self, stored: torch.Tensor) -> torch.Tensor:
        return self.decoder_.to(stored.dtype)(stored)

    def to_set(
        self, stored: torch.Tensor, spec: DatasetSpec, ipc: int, **fields: Any
    ) -> SyntheticSet:
        syn = super().to_set(stored, spec, ipc, **fields)
        weights = torch.cat([p.detach().flatten() for p in self.decoder_.parameters()])
        return self._with_stored(
            syn, {"latent.codes": stored, "latent.decoder": weights}, latent_dim=self.dim,
            latent_width=self.width, decoder_reconstruction_mse=self.reconstruction_mse_,
        )  # fmt: skip


CODECS: dict[str, Any] = {
    "pixels": Pixels, "formation": Formation, "fred": Frequency, "haba": Factorisation,
    "latent": Latent,
}  # fmt: skip


def _valid_codec(value: Any) -> bool:
    try:
        make_codec(value)
    except ConfigError:
        return False
    return True


#: a ``codec`` option
CODEC = Rule(
    _valid_codec,
    "must be pixels, formation:F (F >= 1), fred:R (0 < R <= 1), haba:H (H >= 1) or latent:D",
)


@dataclasses.dataclass(frozen=True)
class CodecConfig(MethodConfig):
    """The option of every method that optimises images: what its set stores."""

    codec: str = "pixels"  # pixels | formation:F | fred:R | haba:H | latent:D, at equal bytes

    rules = {"codec": CODEC}
    auto_codec: ClassVar[bool] = False  # whether the method picks a codec for "auto"

    def __post_init__(self) -> None:
        if self.codec == AUTO and not self.auto_codec:
            raise ConfigError(f"codec {CODEC.text}, got 'auto'")
        super().__post_init__()


#: ``initial(train, n, generator)``: ``n`` starting images per class, class-major
InitialImages = Callable[[ImageDataset, int, torch.Generator], torch.Tensor]


def start_stored(
    spec: str,
    train: ImageDataset,
    ipc: int,
    generator: torch.Generator,
    initial: InitialImages | str,
    *,
    label_vectors: bool = False,
) -> tuple[Codec, torch.Tensor]:
    """The codec named by ``spec``, fitted to ``train``, and the stored tensor it starts from
    (requiring grad): the encoding of the images ``initial`` gives -- a function, or an ``init``
    name of :func:`~ddkit.methods.common.initial_images` --, as many per class as the codec
    needs at the bytes of ``ipc`` plain images. ``label_vectors``: the method stores a label
    vector per image (soft or learned labels), which the budget and each image pay for."""
    codec = make_codec(spec)
    codec.label_bytes = label_bytes(label_vectors, train.spec.num_classes)
    codec.fit(train)
    n = codec.real_per_class(ipc, train.spec)
    if isinstance(initial, str):
        start = initial_images(train, n, generator, initial)
    else:
        start = initial(train, n, generator)
    return codec, codec.encode(start, generator).requires_grad_(True)


def decode_saved(
    spec: DatasetSpec, meta: dict[str, Any], extras: dict[str, torch.Tensor]
) -> torch.Tensor | None:
    """The training images of a saved set decoded from its stored tensors (``meta['codec']``,
    or IDM's multi-formation images), or ``None`` for a set that stores its images."""
    name = meta.get("codec")
    if name is None and STORED_IMAGES in extras and "formation_factor" in meta:
        name = f"formation:{int(meta['formation_factor'])}"
    if name is None:
        return None
    codec = make_codec(name)
    stored = codec.restore(spec, meta, extras)
    if stored is None:
        return None
    with torch.no_grad():
        return codec.decode(stored).float()


def make_codec(spec: str) -> Codec:
    """A codec from its spec string: ``pixels``, ``formation:F`` (integer F), ``fred:R``
    (0 < R <= 1), ``haba:H`` (H hallucinators) or ``latent:D`` (D-dimensional codes)."""
    name, _, arg = str(spec).partition(":")
    if name not in CODECS:
        raise ConfigError(
            f"unknown codec {spec!r}; valid: pixels, formation:F, fred:R, haba:H, latent:D"
        )
    if name == "pixels":
        if arg:
            raise ConfigError(f"codec pixels takes no argument, got {spec!r}")
        return Pixels()
    try:
        value = float(arg) if name == "fred" else int(arg)
    except ValueError:
        raise ConfigError(f"codec {spec!r}: {name} needs a number after ':'") from None
    return CODECS[name](value)
