"""Normalised images kept as their 8-bit pixels: a float32 tensor to every reader, a quarter of
the memory (issue 82).

A folder of 8-bit images decoded into the cache (:mod:`ddkit.data.cache`) is stored as its
pixels, ``uint8 (N, C, H, W)``, and opened as :class:`ByteImages`: a tensor subclass whose dtype
is float32 and whose values are ``(pixels / 255 - mean) / std``, computed in float32 exactly as
the float32 path computes them (the same bits; tests check it). Reading rows -- indexing,
``index_select``, ``select`` -- decodes only those rows; slicing and moving to a device keep the
pixels (a slice of the map, or the pixels on the device, four times smaller than their float32
values); every other operation sees the decoded float32 values. A 100,000-image folder at 64 px
is 1.2 GB of pixels instead of 4.9 GB of float32, so it stays resident in a laptop's memory
while a matching method draws its real batches from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree

__all__ = ["ByteImages", "decode_pixels", "plain", "stored_rows"]

aten = torch.ops.aten


def decode_pixels(pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(pixels / 255 - mean) / std`` in float32: 8-bit pixels as the normalised images the
    float32 path holds (:func:`ddkit.data.dataset.to_nchw` scales by 255, then
    :func:`ddkit.data.dataset.normalise`)."""
    return pixels.to(torch.float32).div_(255.0).sub_(mean).div_(std)


def stored_rows(images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``images[index]``, still as pixels where ``images`` is :class:`ByteImages` (a split's
    validation rows and the rest of its train rows; a dataset's subset)."""
    if isinstance(images, ByteImages):
        return images._with(images.pixels[index])
    return images[index]


def plain(images: torch.Tensor) -> torch.Tensor:
    """``images`` as a plain tensor: :class:`ByteImages` decoded, anything else as it is."""
    return images.decoded() if isinstance(images, ByteImages) else images


class ByteImages(torch.Tensor):
    """Normalised float32 images ``(N, C, H, W)`` held as their uint8 ``pixels`` and the
    ``channel_mean`` and ``channel_std`` (each ``(1, C, 1, 1)`` float32, on the pixels' device)
    they are normalised by."""

    pixels: torch.Tensor
    channel_mean: torch.Tensor
    channel_std: torch.Tensor

    @staticmethod
    def __new__(cls, pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> ByteImages:
        if pixels.dtype != torch.uint8 or pixels.ndim != 4:
            raise ValueError(
                f"pixels must be uint8 (N, C, H, W), got {pixels.dtype} {tuple(pixels.shape)}"
            )
        shape = (1, pixels.shape[1], 1, 1)
        mean, std = (v.to(pixels.device, torch.float32).reshape(shape) for v in (mean, std))
        out = torch.Tensor._make_wrapper_subclass(  # type: ignore[attr-defined]
            cls, pixels.shape, strides=pixels.stride(), dtype=torch.float32, device=pixels.device
        )
        out.pixels, out.channel_mean, out.channel_std = pixels, mean, std
        return out

    __torch_function__ = torch._C._disabled_torch_function_impl

    def decoded(self) -> torch.Tensor:
        """The float32 values (a new tensor)."""
        return decode_pixels(self.pixels, self.channel_mean, self.channel_std)

    def _with(self, pixels: torch.Tensor) -> ByteImages:
        return ByteImages(pixels, self.channel_mean, self.channel_std)

    def __repr__(self) -> str:  # the default repr would decode every row
        return f"ByteImages(shape={tuple(self.shape)}, device={self.device}, stored as uint8)"

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickled (multiprocessing) as its values
        return (torch.as_tensor, (self.decoded(),))

    def __setitem__(self, index: Any, value: Any) -> None:
        _read_only()

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN206
        kwargs = kwargs or {}
        if func._schema.is_mutable and any(isinstance(a, ByteImages) for a in args):
            _read_only()
        rule = _RULES.get(func)
        if rule is not None:
            out = rule(*args, **kwargs)
            if out is not NotImplemented:
                return out
        args, kwargs = pytree.tree_map_only(ByteImages, ByteImages.decoded, (args, kwargs))
        return func(*args, **kwargs)


def _read_only() -> None:
    from ddkit.errors import DataError

    raise DataError(
        "these images are read from a folder's cache as 8-bit pixels and cannot be written in "
        "place; write into a copy (images.clone())"
    )


def _slice(x: ByteImages, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> Any:
    """Rows or pixels cut out of the map: still bytes (a channel slice decodes)."""
    if dim % 4 == 1:
        return NotImplemented
    return x._with(aten.slice.Tensor(x.pixels, dim, start, end, step))


def _index(x: ByteImages, indices: list[torch.Tensor | None]) -> Any:
    """Rows by index (``x[idx]``, a mask, a ``(K, B)`` index): only they are decoded."""
    if len(indices) != 1 or indices[0] is None:
        return NotImplemented
    return (
        decode_pixels(x.pixels[indices[0]], x.channel_mean, x.channel_std)
        if indices[0].ndim
        else NotImplemented
    )


def _index_select(x: ByteImages, dim: int, index: torch.Tensor) -> Any:
    if dim % 4 != 0:
        return NotImplemented
    return decode_pixels(x.pixels.index_select(0, index), x.channel_mean, x.channel_std)


def _select(x: ByteImages, dim: int, index: int) -> Any:
    """One row (``x[i]``): ``(C, H, W)`` decoded."""
    if dim % 4 != 0:
        return NotImplemented
    return decode_pixels(x.pixels[index].unsqueeze(0), x.channel_mean, x.channel_std)[0]


def _same(x: ByteImages, *args: Any, **kwargs: Any) -> ByteImages:
    return x._with(x.pixels)


def _to_copy(
    x: ByteImages, *, dtype: torch.dtype | None = None, device: Any = None, **rest: Any
) -> Any:
    """To another device in float32: the pixels move, still bytes."""
    plain = rest.get("layout") in (None, torch.strided) and not rest.get("pin_memory")
    if dtype not in (None, torch.float32) or not plain or rest.get("memory_format") is not None:
        return NotImplemented
    return x._with(x.pixels.to(device) if device is not None else x.pixels.clone())


_RULES: dict[Any, Callable[..., Any]] = {
    aten.slice.Tensor: _slice,
    aten.index.Tensor: _index,
    aten.index_select.default: _index_select,
    aten.select.int: _select,
    aten.detach.default: _same,
    aten.alias.default: _same,
    aten._to_copy.default: _to_copy,
}
