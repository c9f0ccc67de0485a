"""ZCA whitening as used by KIP and MTT.

Nguyen, Chen & Lee, "Dataset Meta-Learning from Kernel Ridge-Regression" (KIP), ICLR 2021, and
Cazenavette et al., "Dataset Distillation by Matching Training Trajectories" (MTT), CVPR 2022.

With ``X`` the centred, flattened training images ``(N, D)`` and ``X^T X / N = U diag(S) U^T``,
the whitening matrix is (KIP's regularisation, relative to the mean eigenvalue)

    ``W = U diag(1 / sqrt(S + eps * mean(S))) U^T``

and the exact inverse is ``U diag(sqrt(S + eps * mean(S))) U^T``. Everything is computed in
float64 and stored in float32.
"""

from __future__ import annotations

import torch

from ddkit.errors import ConfigError, DataError, FileFormatError

__all__ = ["ZCA"]

_CHUNK = 4096


class ZCA:
    """ZCA whitening fitted on training images ``(N, C, H, W)``.

    Args:
        eps: regularisation, relative to the mean eigenvalue (0.1 as in KIP/MTT).
        center: subtract the per-feature training mean before whitening (and add it back in
            :meth:`inverse`).

    Fitted attributes (scikit-learn style): ``mean_`` ``(D,)``, ``whiten_`` ``(D, D)``,
    ``unwhiten_`` ``(D, D)``, ``shape_`` ``(C, H, W)``; all float32.
    """

    def __init__(self, eps: float = 0.1, *, center: bool = True) -> None:
        if not eps >= 0:
            raise ConfigError(f"ZCA eps must be >= 0, got {eps}")
        self.eps = float(eps)
        self.center = bool(center)

    def __repr__(self) -> str:
        return f"ZCA(eps={self.eps}, center={self.center})"

    @property
    def fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_tensors`) has run."""
        return hasattr(self, "whiten_")

    def fit(self, x: torch.Tensor) -> ZCA:
        """Fit on ``x`` ``(N, C, H, W)`` (or ``(N, D)``); returns ``self``."""
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] < 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"ZCA.fit expects images (N, C, H, W), got {shape}")
        if not torch.isfinite(x).all():
            raise DataError("ZCA.fit: images contain NaN or inf")
        n = x.shape[0]
        flat = x.detach().reshape(n, -1)
        d = flat.shape[1]
        if self.center:
            mean = flat.to(torch.float64).sum(0) / n
        else:
            mean = torch.zeros(d, dtype=torch.float64, device=x.device)
        cov = torch.zeros(d, d, dtype=torch.float64, device=x.device)
        for i in range(0, n, _CHUNK):  # chunked so the float64 copy stays small
            xc = flat[i : i + _CHUNK].to(torch.float64) - mean
            cov += xc.T @ xc
        cov /= n
        s, u = torch.linalg.eigh(cov)
        s = s.clamp(min=0.0)
        reg = s + self.eps * s.mean()
        if not bool((reg > 0).all()):
            raise DataError("ZCA.fit: covariance is singular and eps is 0; use eps > 0")
        self.whiten_ = ((u * reg.rsqrt()) @ u.T).to(torch.float32)
        self.unwhiten_ = ((u * reg.sqrt()) @ u.T).to(torch.float32)
        self.mean_ = mean.to(torch.float32)
        self.shape_ = tuple(x.shape[1:])
        return self

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise ConfigError("ZCA is not fitted; call fit() or from_tensors() first")
        if not isinstance(x, torch.Tensor) or tuple(x.shape[1:]) != self.shape_:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise DataError(f"ZCA was fitted on (N, {self.shape_}) but got {shape}")
        return x.reshape(x.shape[0], -1)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """Whiten ``x`` (same shape out, ``x``'s dtype and device; differentiable)."""
        flat = self._check(x)
        w = self.whiten_.to(device=x.device, dtype=x.dtype)
        m = self.mean_.to(device=x.device, dtype=x.dtype)
        return ((flat - m) @ w).reshape(x.shape)  # W is symmetric

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        """Undo :meth:`transform` (exact up to float32 storage of the matrices)."""
        flat = self._check(x)
        w = self.unwhiten_.to(device=x.device, dtype=x.dtype)
        m = self.mean_.to(device=x.device, dtype=x.dtype)
        return (flat @ w + m).reshape(x.shape)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted state as named tensors (for ``safetensors``)."""
        if not self.fitted:
            raise ConfigError("ZCA is not fitted; nothing to save")
        return {
            "zca.mean": self.mean_.contiguous(),
            "zca.whiten": self.whiten_.contiguous(),
            "zca.unwhiten": self.unwhiten_.contiguous(),
            "zca.shape": torch.tensor(self.shape_, dtype=torch.int64),
            "zca.eps": torch.tensor([self.eps], dtype=torch.float64),
            "zca.center": torch.tensor([int(self.center)], dtype=torch.int64),
        }

    @classmethod
    def from_tensors(cls, d: dict[str, torch.Tensor]) -> ZCA:
        """Rebuild a fitted :class:`ZCA` from :meth:`to_tensors` output."""
        keys = ("zca.mean", "zca.whiten", "zca.unwhiten", "zca.shape", "zca.eps", "zca.center")
        missing = [k for k in keys if k not in d]
        if missing:
            raise FileFormatError(f"ZCA state is missing {', '.join(missing)}")
        shape = tuple(int(v) for v in d["zca.shape"].tolist())
        dim = 1
        for v in shape:
            dim *= v
        if (
            tuple(d["zca.mean"].shape) != (dim,)
            or tuple(d["zca.whiten"].shape) != (dim, dim)
            or tuple(d["zca.unwhiten"].shape) != (dim, dim)
        ):
            raise FileFormatError(f"ZCA state has inconsistent shapes for images {shape}")
        z = cls(float(d["zca.eps"].item()), center=bool(int(d["zca.center"].item())))
        z.mean_ = d["zca.mean"].to(torch.float32)
        z.whiten_ = d["zca.whiten"].to(torch.float32)
        z.unwhiten_ = d["zca.unwhiten"].to(torch.float32)
        z.shape_ = shape
        return z
