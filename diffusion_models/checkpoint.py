"""DDPM checkpoints: a folder that rebuilds its own model.

Layout of one checkpoint folder::

    unet/        diffusers save_pretrained of the raw weights (config.json + safetensors)
    unet_ema/    the same for the EMA weights
    scheduler/   the DDPMScheduler config
    ddpm.json    DDPMMeta: data, geometry, step, validation losses, training config
    trainer_state.pt   (last/ only) optimiser, EMA count, step, RNG, best-so-far

A training run's ``save_dir`` holds ``best/`` (best normal-validation ε-loss)
and ``last/``. :func:`load_ddpm` accepts either the run folder (→ ``best/``)
or a checkpoint folder. Saves are atomic: a crash never leaves half a folder.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from diffusers import DDPMScheduler, UNet2DModel

from common.atomic import atomic_dir, torch_save_atomic
from common.errors import UserError

FORMAT_VERSION = 1
META_FILE = "ddpm.json"
TRAINER_STATE_FILE = "trainer_state.pt"
REQUIRED = (META_FILE, "unet/config.json", "unet_ema/config.json", "scheduler/scheduler_config.json")
Weights = Literal["raw", "ema"]


@dataclass(frozen=True)
class ValLosses:
    """Mean ε-L1 on normal validation images, for the raw and EMA weights.

    ``*_all``: t uniform over [0, T); ``*_dissolve``: t uniform over [30, 100),
    the range the dissolver uses, which is what selection uses.
    """

    raw_all: float
    raw_dissolve: float
    ema_all: float
    ema_dissolve: float

    @property
    def preferred(self) -> Weights:
        """The weights with the lower dissolve-range loss (raw on a tie or nan)."""
        return "ema" if self.ema_dissolve < self.raw_dissolve else "raw"

    @property
    def score(self) -> float:
        """The selection criterion: the dissolve-range loss of the preferred weights."""
        return min(self.raw_dissolve, self.ema_dissolve)


@dataclass(frozen=True)
class DDPMMeta:
    """What a checkpoint knows about itself; ``config`` is the full training config.

    ``data_root`` (resolved) and ``split_seed`` say which split of which data the DDPM trained on, so
    ``train.py`` can refuse a DDPM whose training images may be its validation or test images.
    """

    dataset: str
    one_class_idx: int | None
    normal_classes: tuple[str, ...]
    data_root: str | None
    split_seed: int
    resolution: int
    channels: int
    source_image_size: int
    step: int
    n_params: int
    val: ValLosses
    best_step: int
    best_val_loss: float
    config: dict = field(default_factory=dict)
    # diagnostic.ChangeTable at this step: mean |x − x̂₀| on normal/anomalous validation images (older: {})
    dissolve_change: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """``preferred_weights`` is derived from ``val``; it is written for the reader, not read back."""
        return json.dumps({**asdict(self), "preferred_weights": self.val.preferred}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: Path) -> "DDPMMeta":
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise UserError(f"{source}: DDPM checkpoint format {data.get('format_version')}, "
                            f"this code reads {FORMAT_VERSION}")
        data.pop("preferred_weights", None)
        config = data.get("config", {})
        # checkpoints before the shared split: the DDPM's split followed its --seed
        data.setdefault("data_root", config.get("data_root"))
        data.setdefault("split_seed", config.get("split_seed", config.get("seed", 0)))
        data["val"] = ValLosses(**data["val"])
        data["normal_classes"] = tuple(data["normal_classes"])
        return cls(**data)


@dataclass(frozen=True)
class DDPMCheckpoint:
    """A loaded checkpoint: both UNets (eval mode), the scheduler and the metadata."""

    path: Path
    unet: UNet2DModel
    unet_ema: UNet2DModel
    scheduler: DDPMScheduler
    meta: DDPMMeta

    def weights(self, which: Weights | Literal["auto"]) -> UNet2DModel:
        """``"auto"`` picks the weights that measured better on validation."""
        table = {"raw": self.unet, "ema": self.unet_ema}
        key = self.meta.val.preferred if which == "auto" else which
        if key not in table:
            raise UserError(f"weights must be one of auto, raw, ema; got {which!r}")
        return table[key]

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        """ᾱ_t for t = 0 … T−1, (T,) float32."""
        return self.scheduler.alphas_cumprod.float()


def save_ddpm(path: str | Path, unet: UNet2DModel, unet_ema: UNet2DModel, scheduler: DDPMScheduler,
              meta: DDPMMeta, trainer_state: dict | None = None) -> Path:
    """Write one checkpoint folder atomically (replacing any previous one at ``path``)."""
    path = Path(path)
    with atomic_dir(path) as tmp:
        unet.save_pretrained(tmp / "unet")
        unet_ema.save_pretrained(tmp / "unet_ema")
        scheduler.save_pretrained(tmp / "scheduler")
        (tmp / META_FILE).write_text(meta.to_json())
        if trainer_state is not None:
            torch_save_atomic(trainer_state, tmp / TRAINER_STATE_FILE)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder for ``path``: itself, or ``path/best`` for a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"DDPM checkpoint {path} does not exist")
    folder = path if (path / META_FILE).exists() or not (path / "best").is_dir() else path / "best"
    missing = [name for name in REQUIRED if not (folder / name).exists()]
    if missing:
        raise UserError(f"DDPM checkpoint {folder} is incomplete: missing {', '.join(missing)}")
    return folder


def load_meta(path: str | Path) -> DDPMMeta:
    """The metadata of the checkpoint at ``path`` (run or checkpoint folder), without loading weights."""
    folder = resolve_checkpoint(path)
    return DDPMMeta.from_json((folder / META_FILE).read_text(), folder)


def load_ddpm(path: str | Path, device: torch.device | str | None = None) -> DDPMCheckpoint:
    """Rebuild both UNets and the scheduler from ``path`` alone (no network access)."""
    folder = resolve_checkpoint(path)
    meta = DDPMMeta.from_json((folder / META_FILE).read_text(), folder)
    nets = [_load_unet(folder / name).to(device or "cpu").eval() for name in ("unet", "unet_ema")]
    scheduler = DDPMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
    return DDPMCheckpoint(folder, nets[0], nets[1], scheduler, meta)


def _load_unet(folder: Path) -> UNet2DModel:
    """The UNet in ``folder`` from safetensors only: a pickled ``.bin`` there is never unpickled."""
    try:
        return UNet2DModel.from_pretrained(folder, local_files_only=True, low_cpu_mem_usage=False,
                                           use_safetensors=True)
    except (OSError, ValueError) as err:  # no or a corrupt safetensors file
        raise UserError(f"DDPM checkpoint {folder}: no readable safetensors weights ({type(err).__name__}; "
                        "pickled .bin weights are not loaded)") from None


def load_trainer_state(folder: str | Path) -> dict:
    """The optimiser/EMA/RNG state saved in ``last/``: tensors and plain values only, so loading
    a folder shared by someone else never runs code."""
    file = Path(folder) / TRAINER_STATE_FILE
    if not file.exists():
        raise UserError(f"{file} is missing: cannot resume from {folder}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, foreign, or holding objects that would need code to rebuild
        raise UserError(f"{file}: not a readable trainer state ({type(err).__name__}; only tensors and plain "
                        "values are loaded)") from None
    if not isinstance(state, dict):
        raise UserError(f"{file}: not a trainer state written by this project")
    return state

