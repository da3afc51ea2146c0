"""DDPM pretraining on the normal class: loop, EMA, validation, checkpoints (docs/method.md, "DDPM and the dissolver").

One optimiser step = ``grad_accum`` micro-batches of ``batch_size`` normal
training images (random horizontal flip only, in [−1, 1]), t ~ U{0, …,
t_train_max}, L1 between predicted and true noise, Adam (0.9, 0.99), gradient
clipping 1.0, EMA every ``ema_every`` steps with the paper's warm-up
(:func:`paper_ema`). fp32 by default (the paper reports that mixed precision kept
its DDPM from converging); ``amp`` runs the UNet's forward in bf16 autocast on a
device with native bf16, the loss and validation staying fp32. On small datasets
the UNet overfits long before 25k steps, so ``best/`` is chosen by the
normal-validation ε-loss at t ∈ [30, 100); ``keep_checkpoints`` also keeps every
saved step under ``steps/``, for a dissolver trained past that minimum.
"""
from __future__ import annotations

import copy
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from common.atomic import make_output_dir
from common.device import default_device, resolve_amp
from common.errors import UserError
from common.seed import seed_everything
from common.transforms import random_hflip
from diffusion_models.checkpoint import DDPMMeta, ValLosses, load_ddpm, load_trainer_state, save_ddpm
from diffusion_models.diagnostic import ChangeTable, dissolve_change, flat_scalars
from diffusion_models.resample import Resampler
from diffusion_models.unet import (DISSOLVE_T, GROUPS, NUM_TRAIN_TIMESTEPS, build_scheduler, build_unet,
                                   count_parameters, eps_l1, make_probe, probe_loss)

# ema-pytorch's defaults behind the paper's trainer: the EMA copies the weights during the first
# EMA_WARMUP_STEPS training steps, then its decay at training step s is 1 − (1 + s − 101)^(−2/3), capped.
EMA_WARMUP_STEPS = 100
EMA_POWER = 2 / 3

# Flags that define the model and its data; a resumed run must not change them.
IDENTITY_FIELDS = ("dataset", "one_class_idx", "normal_classes", "split_seed", "image_size", "dim", "dim_mults")


@dataclass(frozen=True)
class DDPMTrainConfig:
    dataset: str
    data_root: str | None = None
    one_class_idx: int | None = None
    normal_classes: tuple[str, ...] | None = None  # `folder` datasets: the normal class folders, as train.py
    split_seed: int = 0  # the data's validation/test split, shared with train.py; independent of `seed`
    download: bool = False
    image_size: int = 32
    dim: int = 64
    dim_mults: tuple[int, ...] = (1, 2, 4, 8)
    train_steps: int = 25_000
    batch_size: int = 64
    grad_accum: int = 2
    lr: float = 8e-5
    ema_decay: float = 0.995
    ema_every: int = 10
    t_train_max: int = NUM_TRAIN_TIMESTEPS - 1
    seed: int = 0
    save_dir: str | None = None
    save_every: int = 1000
    keep_checkpoints: bool = False
    val_every: int = 250
    val_repeats: int = 4
    resume: bool = False
    amp: bool = False
    device: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.dim > 0 and self.dim % GROUPS == 0, f"--dim must be a positive multiple of {GROUPS}"),
            (len(self.dim_mults) >= 2 and min(self.dim_mults) > 0, "--dim_mults needs >= 2 positive integers"),
            (self.image_size % 2 ** (len(self.dim_mults) - 1) == 0,
             f"--image_size {self.image_size} must be divisible by 2^(len(--dim_mults) - 1)"),
            (0 <= self.t_train_max < NUM_TRAIN_TIMESTEPS, f"--t_train_max must be in [0, {NUM_TRAIN_TIMESTEPS})"),
            (0 < self.ema_decay < 1, "--ema_decay must be in (0, 1)"),
            (self.lr > 0, "--lr must be positive"),
        ]
        for name in ("image_size", "train_steps", "batch_size", "grad_accum", "ema_every", "save_every",
                     "val_every", "val_repeats"):
            checks.append((getattr(self, name) > 0, f"--{name} must be positive"))
        for ok, message in checks:
            if not ok:
                raise UserError(message)


@dataclass(frozen=True)
class TrainResult:
    save_dir: Path
    step: int
    best_step: int
    best_val_loss: float
    last_val: ValLosses
    n_params: int
    train_seconds: float


@dataclass(frozen=True)
class DDPMData:
    """Images at the DDPM resolution, each (n, C, R, R) float32 in [0, 1].

    Small enough to keep in memory at R = 32, which makes a training step a
    tensor index and a resumed run bit-exact.
    """

    train: torch.Tensor
    val_normal: torch.Tensor
    val_anomalous: torch.Tensor
    source_image_size: int
    normal_classes: tuple[str, ...]

    @property
    def channels(self) -> int:
        return self.train.shape[1]


def _stack(ds: Dataset, indices: np.ndarray, resampler: Resampler) -> torch.Tensor:
    loader = DataLoader(Subset(ds, indices.tolist()), batch_size=256)
    parts = [resampler.down(images) for images, _ in loader]
    return torch.cat(parts) if parts else torch.empty(0, 3, resampler.resolution, resampler.resolution)


def load_ddpm_data(dataset: str, data_root: str | None, one_class_idx: int | None, resolution: int,
                   download: bool = False, split_seed: int = 0, with_train: bool = True,
                   normal_classes: tuple[str, ...] | None = None) -> DDPMData:
    """Normal training images and normal/anomalous validation images, brought to ``resolution``.

    The split is the one ``train.py`` makes of the same data (same ``split_seed`` and normal class), so
    the DDPM never trains on the classifier's validation or test images. ``with_train=False`` leaves
    ``train`` empty: evaluation needs only validation images.
    """
    from datasets import load_one_class_split  # here, so the engine and its tests need no data layer

    split = load_one_class_split(dataset, data_root, one_class_idx, image_size=None, seed=split_seed,
                                 download=download, normal_classes=normal_classes)
    try:
        resampler = Resampler(split.image_size, resolution)
    except UserError as err:
        raise UserError(f"--image_size {resolution}: {err}") from None
    val_normal = np.flatnonzero(split.val.is_anomaly == 0)
    if len(split.train) == 0 or len(val_normal) == 0:
        raise UserError(f"--dataset {dataset}: the normal class has no training or no validation images")
    return DDPMData(train=_stack(split.train, np.arange(len(split.train) if with_train else 0), resampler),
                    val_normal=_stack(split.val, val_normal, resampler),
                    val_anomalous=_stack(split.val, np.flatnonzero(split.val.is_anomaly == 1), resampler),
                    source_image_size=split.image_size, normal_classes=tuple(split.normal_classes))


class PaperEMA:
    """Exponential moving average of parameters with the paper's warm-up, stepped every ``every`` training steps.

    Call c of :meth:`step` happens at training step s = c·every and decays by d(s) = 1 − (1 + s − 101)^(−2/3),
    capped at ``decay``, with d = 0 (a plain copy) up to step 101 (tests/test_ddpm.py checks it against the
    formula). Our own small class rather than ``diffusers.training_utils.EMAModel``, whose module imports
    accelerate, transformers and peft whenever they are installed.
    """

    def __init__(self, parameters, decay: float, every: int):
        self.decay, self.every = decay, every
        self.shadow = [p.detach().clone() for p in parameters]
        self.optimization_step = 0  # calls of step(); the name EMAModel used, kept in checkpoints as ema_calls

    def get_decay(self, call: int) -> float:
        """The decay applied at call ``call`` (training step ``call * every``)."""
        e = call * self.every - (EMA_WARMUP_STEPS + 1)
        return 0.0 if e <= 0 else min(self.decay, 1.0 - (1.0 + e) ** (-EMA_POWER))

    @torch.no_grad()
    def step(self, parameters) -> None:
        self.optimization_step += 1
        weight = 1.0 - self.get_decay(self.optimization_step)
        for shadow, param in zip(self.shadow, parameters):
            shadow.lerp_(param.detach().to(shadow.dtype), weight)

    @torch.no_grad()
    def copy_to(self, parameters) -> None:
        for shadow, param in zip(self.shadow, parameters):
            param.copy_(shadow)


def paper_ema(parameters, decay: float, every: int) -> PaperEMA:
    """The DDPM's EMA: ema-pytorch's warm-up, counted in training steps, stepped every ``every`` steps."""
    return PaperEMA(parameters, decay, every)


def batch_indices(n: int, batch_size: int, micro_step: int, seed: int) -> torch.Tensor:
    """Indices of micro-batch ``micro_step``: shuffled epochs, a pure function of the step.

    Being stateless, a resumed run draws exactly the batches an uninterrupted one would.
    """
    per_epoch = max(1, n // batch_size)
    epoch, j = divmod(micro_step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return torch.from_numpy(perm[j * batch_size:(j + 1) * batch_size])


class DDPMTrainer:
    """Holds the model, EMA, optimiser and RNG of one run; ``fit`` trains to ``cfg.train_steps``."""

    def __init__(self, cfg: DDPMTrainConfig, data: DDPMData, save_dir: Path, show_progress: bool = True):
        self.cfg, self.data, self.save_dir, self.show_progress = cfg, data, Path(save_dir), show_progress
        self.device = default_device(cfg.device)
        self.amp = resolve_amp(cfg.amp, self.device)
        seed_everything(cfg.seed)
        self.unet = build_unet(cfg.dim, cfg.dim_mults, cfg.image_size, data.channels).to(self.device)
        self.scheduler = build_scheduler()
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float().to(self.device)
        self.optimizer = torch.optim.Adam(self.unet.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.unet_ema = copy.deepcopy(self.unet).requires_grad_(False)  # EMA weights, synced before use
        self.ema = paper_ema(self.unet.parameters(), cfg.ema_decay, cfg.ema_every)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step, self.best_step, self.best_loss = 0, -1, float("inf")
        val = data.val_normal * 2 - 1
        self.probes = {"all": make_probe(val, 0, NUM_TRAIN_TIMESTEPS, cfg.val_repeats, cfg.seed),
                       "dissolve": make_probe(val, *DISSOLVE_T, cfg.val_repeats, cfg.seed)}

    def train_step(self) -> float:
        """One optimiser step over ``grad_accum`` micro-batches; returns the mean ε-L1."""
        self.unet.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(self.cfg.grad_accum):
            idx = batch_indices(len(self.data.train), self.cfg.batch_size,
                                self.step * self.cfg.grad_accum + micro, self.cfg.seed)
            x0 = random_hflip(self.data.train[idx], self.generator) * 2 - 1
            t = torch.randint(0, self.cfg.t_train_max + 1, (len(x0),), generator=self.generator)
            noise = torch.randn(x0.shape, generator=self.generator)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                losses = eps_l1(self.unet, x0.to(self.device), t.to(self.device), noise.to(self.device),
                                self.alphas_cumprod)
            loss = losses.float().mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite DDPM loss {loss.item()} at step {self.step}")
            (loss / self.cfg.grad_accum).backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(self.unet.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        if self.step % self.cfg.ema_every == 0:
            self.ema.step(self.unet.parameters())
        return total / self.cfg.grad_accum

    def ema_unet(self) -> torch.nn.Module:
        """The EMA weights as a UNet (copied from the EMA's shadow parameters)."""
        self.ema.copy_to(self.unet_ema.parameters())
        return self.unet_ema

    def validate(self) -> ValLosses:
        raw, ema = self.unet, self.ema_unet()
        return ValLosses(
            raw_all=probe_loss(raw, self.probes["all"], self.alphas_cumprod),
            raw_dissolve=probe_loss(raw, self.probes["dissolve"], self.alphas_cumprod),
            ema_all=probe_loss(ema, self.probes["all"], self.alphas_cumprod),
            ema_dissolve=probe_loss(ema, self.probes["dissolve"], self.alphas_cumprod),
        )

    def fit(self) -> TrainResult:
        if self.cfg.train_steps <= self.step:
            raise UserError(f"--train_steps {self.cfg.train_steps} is not beyond step {self.step} "
                            f"already in {self.save_dir / 'last'}")
        start, clock, val = self.step, time.perf_counter(), None
        with SummaryWriter(self.save_dir / "tb", purge_step=self.step + 1 if self.step else None) as writer, \
                tqdm(total=self.cfg.train_steps, initial=self.step, desc="ddpm", disable=not self.show_progress,
                     dynamic_ncols=True) as bar:
            while self.step < self.cfg.train_steps:
                try:
                    loss = self.train_step()
                except FloatingPointError as err:
                    last = self.save_dir / "last"
                    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
                    raise UserError(f"DDPM training stopped: {err}; likely cause: a learning rate too high "
                                    f"(--lr {self.cfg.lr}); {kept}") from None
                writer.add_scalar("train/loss", loss, self.step)
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.update()
                if self._due(self.cfg.val_every) or self._due(self.cfg.save_every):
                    val = self._checkpoint(writer)
        return TrainResult(self.save_dir, self.step, self.best_step, self.best_loss, val,
                           count_parameters(self.unet), time.perf_counter() - clock if self.step > start else 0.0)

    def _due(self, every: int) -> bool:
        return self.step % every == 0 or self.step == self.cfg.train_steps

    def _checkpoint(self, writer: SummaryWriter) -> ValLosses:
        """Validate; save ``best/`` on improvement and ``last/`` when due (each with its own val)."""
        val = self.validate()
        change = dissolve_change({"raw": self.unet, "ema": self.ema_unet()}, self.alphas_cumprod,
                                 self.data.val_normal, self.data.val_anomalous)
        for name, value in {**{f"val/{k}": v for k, v in asdict(val).items()}, **flat_scalars(change)}.items():
            writer.add_scalar(name, value, self.step)
        if val.score < self.best_loss:
            self.best_step, self.best_loss = self.step, val.score
            save_ddpm(self.save_dir / "best", self.unet, self.ema_unet(), self.scheduler, self._meta(val, change))
        if self._due(self.cfg.save_every):
            if self.cfg.keep_checkpoints:  # before last/: a resumed run re-saves a step it may have lost
                save_ddpm(step_dir(self.save_dir, self.step), self.unet, self.ema_unet(), self.scheduler,
                          self._meta(val, change))
            save_ddpm(self.save_dir / "last", self.unet, self.ema_unet(), self.scheduler, self._meta(val, change),
                      trainer_state=self._state())
        writer.add_scalar("val/best", self.best_loss, self.step)
        with open(self.save_dir / "metrics.jsonl", "a") as log:  # the validation curve, plain text
            log.write(json.dumps({"step": self.step, **asdict(val), "best_step": self.best_step,
                                  "dissolve_change": change}) + "\n")
        return val

    def _meta(self, val: ValLosses, change: ChangeTable) -> DDPMMeta:
        d = self.data
        return DDPMMeta(dataset=self.cfg.dataset, one_class_idx=self.cfg.one_class_idx,
                        normal_classes=d.normal_classes, data_root=_resolved(self.cfg.data_root),
                        split_seed=self.cfg.split_seed, resolution=self.cfg.image_size, channels=d.channels,
                        source_image_size=d.source_image_size, step=self.step, n_params=count_parameters(self.unet),
                        val=val, best_step=self.best_step, best_val_loss=self.best_loss, config=asdict(self.cfg),
                        dissolve_change=change)

    def _state(self) -> dict:
        return {"step": self.step, "optimizer": self.optimizer.state_dict(), "ema_calls": self.ema.optimization_step,
                "generator": self.generator.get_state(), "best_step": self.best_step, "best_loss": self.best_loss}

    def restore(self) -> None:
        """Continue from ``save_dir/last``: weights, EMA, optimiser, step, RNG and best-so-far."""
        last = self.save_dir / "last"
        ckpt = load_ddpm(last, device=self.device)
        stored = ckpt.meta.config
        for name in IDENTITY_FIELDS:
            if _as_json(getattr(self.cfg, name)) != stored.get(name):
                raise UserError(f"--{name} {getattr(self.cfg, name)} differs from {stored.get(name)} in {last}")
        state = load_trainer_state(last)
        self.unet.load_state_dict(ckpt.unet.state_dict())
        self.unet_ema.load_state_dict(ckpt.unet_ema.state_dict())
        self.ema = paper_ema(self.unet_ema.parameters(), self.cfg.ema_decay, self.cfg.ema_every)
        # checkpoints before the warm-up EMA stored AveragedModel's update count, the same number
        self.ema.optimization_step = int(state.get("ema_calls", state.get("ema_n_averaged", 0)))
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.step, self.best_step, self.best_loss = state["step"], state["best_step"], state["best_loss"]


def step_dir(save_dir: Path, step: int) -> Path:
    """Where ``keep_checkpoints`` keeps the checkpoint of ``step``: ``<save_dir>/steps/<step, 6 digits>``."""
    return Path(save_dir) / "steps" / f"{step:06d}"


def _resolved(data_root: str | None) -> str | None:
    return str(Path(data_root).expanduser().resolve()) if data_root else None


def _as_json(value):
    """Tuples come back from ddpm.json as lists."""
    return list(value) if isinstance(value, tuple) else value


def default_save_dir(dataset: str, one_class_idx: int | None, normal_classes: tuple[str, ...], res: int) -> Path:
    """``runs/ddpm/<dataset>-c<class>-<res>``; the class is the index, or the names when defaulted."""
    cls = one_class_idx if one_class_idx is not None else re.sub(r"[^A-Za-z0-9]+", "_", "+".join(normal_classes))
    return Path("runs") / "ddpm" / f"{dataset}-c{cls}-{res}"


def run_training(cfg: DDPMTrainConfig, show_progress: bool = True) -> TrainResult:
    """Load the normal-class data, train (or resume) and return where the checkpoints are."""
    data = load_ddpm_data(cfg.dataset, cfg.data_root, cfg.one_class_idx, cfg.image_size, download=cfg.download,
                          split_seed=cfg.split_seed, normal_classes=cfg.normal_classes)
    save_dir = Path(cfg.save_dir) if cfg.save_dir else default_save_dir(
        cfg.dataset, cfg.one_class_idx, data.normal_classes, cfg.image_size)
    if not cfg.resume and (save_dir / "last").exists():
        raise UserError(f"--save_dir {save_dir} already holds a run; pass --resume or another --save_dir")
    make_output_dir(save_dir, "--save_dir")  # before any training: a bad folder fails in one line, at once
    trainer = DDPMTrainer(cfg, data, save_dir, show_progress=show_progress)
    if cfg.resume:
        if not (save_dir / "last").is_dir():
            raise UserError(f"--resume: there is no {save_dir / 'last'} to resume from")
        trainer.restore()
    return trainer.fit()
