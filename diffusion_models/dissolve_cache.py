"""Every dissolved version of a small training set, computed once (``--dissolve_cache``, docs/gpu.md).

x̂₀ is a deterministic function of (image, flip, t) with t an integer in [t_min, t_max],
so for N training images there are only 2·(t_max − t_min + 1)·N distinct dissolved images:
BreastMNIST's 399 normal images at t ∈ [30, 99] need 55,860 UNet forwards, seconds on a GPU.
A training step then indexes the table instead of running the UNet. The lookup draws the flip
coins and the timesteps from the generator exactly as ``random_hflip`` + ``Dissolver`` do, so a
cached run consumes the same random numbers and sees the same images as an uncached one
(bit for bit when the UNet's output for an image does not depend on the rest of its batch,
as on CPU; ``tests/test_dissolve_cache.py``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from common.errors import UserError
from diffusion_models.dissolver import Dissolver, draw_t

MAX_CACHE_GIB = 16.0  # a table larger than this is refused: the cache is for small (28-64 px) sets


class IndexedDataset(Dataset):
    """``ds[i] -> (*base[i], i)``: the cache needs each training image's row in the table."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple:
        return (*self.base[index], index)


class DissolveCache(nn.Module):
    """table: (2, T, N, C, H, W) float, ``table[f, t − t_min, i]`` = x̂₀ of image i, flipped if f, at t."""

    def __init__(self, table: torch.Tensor, t_range: tuple[int, int], per_sample_t: bool) -> None:
        super().__init__()
        if table.dim() != 6 or table.shape[0] != 2 or table.shape[1] != t_range[1] - t_range[0] + 1:
            raise ValueError(f"table must be (2, T, N, C, H, W) with T = {t_range[1] - t_range[0] + 1}, "
                             f"got {tuple(table.shape)}")
        self.register_buffer("table", table, persistent=False)
        self.t_range, self.per_sample_t = tuple(t_range), per_sample_t

    @classmethod
    @torch.no_grad()
    def build(cls, dissolver: Dissolver, images: torch.Tensor, chunk: int = 256,
              max_gib: float = MAX_CACHE_GIB) -> "DissolveCache":
        """images: (N, C, H, W) in [0, 1], row i = dataset index i, on the dissolver's device."""
        t_min, t_max = dissolver.t_range
        shape = (2, t_max - t_min + 1, *images.shape)
        gib = torch.Size(shape).numel() * 4 / 2**30
        if gib > max_gib:
            raise UserError(f"--dissolve_cache would need {gib:.1f} GiB for {len(images)} images of "
                            f"{tuple(images.shape[1:])} (limit {max_gib:g} GiB); run without it")
        table = torch.empty(shape, dtype=torch.float32, device=images.device)
        for f, source in enumerate((images, images.flip(-1))):
            for t in range(t_min, t_max + 1):
                for start in range(0, len(images), chunk):
                    table[f, t - t_min, start:start + chunk] = dissolver(source[start:start + chunk], t=t)
        return cls(table, (t_min, t_max), dissolver.per_sample_t)

    @torch.no_grad()
    def flip_and_dissolve(self, x: torch.Tensor, index: torch.Tensor,
                          generator: torch.Generator | None = None) -> torch.Tensor:
        """x: (B, C, H, W), the images of dataset rows ``index`` (B,) -> (B, C, H, W) dissolved.

        Stands for ``dissolver(random_hflip(x, generator), generator=generator)``: the same
        draws, in the same order, from the same generator (coins, then t).
        """
        if index is None:
            raise ValueError("the dissolve cache needs the batch's dataset indices (IndexedDataset)")
        if tuple(x.shape[1:]) != tuple(self.table.shape[3:]):
            raise ValueError(f"cached images are {tuple(self.table.shape[3:])}, the batch is {tuple(x.shape[1:])}")
        n, device = len(index), self.table.device
        coin_device = generator.device if generator is not None else torch.device("cpu")
        flip = torch.rand(n, generator=generator, device=coin_device) < 0.5  # as common.transforms.random_hflip
        t = draw_t(n, self.t_range, self.per_sample_t, generator, device)  # as Dissolver._timesteps
        return self.table[flip.to(device).long(), t - self.t_range[0], index.to(device)]

    def extra_repr(self) -> str:
        return f"table={tuple(self.table.shape)}, t_range={self.t_range}, per_sample_t={self.per_sample_t}"


def stack_images(dataset: Dataset, device: torch.device) -> torch.Tensor:
    """(N, C, H, W): every image of ``dataset`` (yielding (image, ...)), row i = index i."""
    return torch.stack([dataset[i][0] for i in range(len(dataset))]).to(device)
