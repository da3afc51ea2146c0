"""``train.py`` without the CLI: build everything from a TrainConfig and train.

Every ``save_step`` epochs ``last.pt`` is written (atomically) with all a
resume needs; every ``val_every`` epochs the CSI AUROC on the **validation**
split decides ``best.pt``. Test data is never read here.
"""
from __future__ import annotations

import functools
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from common.augment import SimCLRAugment
from common.atomic import make_output_dir
from common.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from common.config import AUTO_BACKBONE, TrainConfig
from common.device import default_device, resolve_amp
from common.distributed import DistContext, barrier, gather_rows, init_distributed, per_process_batch, shutdown
from common.errors import UserError
from common.logging import RunLogger
from common.seed import make_generator, rng_state, seed_everything, set_rng_state
from datasets import OneClassSplit
from datasets.from_config import load_split
from diffusion_models.along_training import select_checkpoint
from diffusion_models.checkpoint import load_meta
from diffusion_models.dissolve_cache import DissolveCache, IndexedDataset, stack_images
from models import backbone_for, build_model, stem_mismatch
from training.dissolvers import build_dissolver, check_ddpm_data
from training.engine import train_one_epoch
from training.losses import ContrastiveShiftLoss
from training.optim import LRSchedule, build_optimizer
from training.validate import validation_auroc
from training.views import make_views


def epoch_batches(dataset, batch_size: int, seed: int, epoch: int, num_workers: int, pin: bool,
                  ctx: DistContext) -> DataLoader:
    """This process's shuffled batches; the order depends only on (seed, epoch), so a resumed run sees the
    same batches. One code path: a single process is a world of one."""
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=pin, drop_last=False)


class Trainer:
    """Holds the run's objects; ``fit`` is the epoch loop."""

    def __init__(self, cfg: TrainConfig, split: OneClassSplit, show_progress: bool = True,
                 ctx: DistContext = DistContext(), device: torch.device | None = None) -> None:
        cfg, warning = fit_backbone(cfg, split.image_size)
        if warning and ctx.is_main:
            print(warning, flush=True)
        self.cfg, self.split, self.ctx = cfg, split, ctx
        self.show_progress = show_progress and ctx.is_main
        self.device = device or default_device(cfg.run.device)
        self.amp = resolve_amp(cfg.run.amp, self.device)  # bf16 only where the device computes it natively
        self.logdir = Path(cfg.run.logdir)
        self.batch_size = per_process_batch(cfg.optim.batch_size, cfg.optim.global_batch_size, ctx.world_size)
        self.model = build_model(cfg.model.backbone, width=cfg.model.width, n_shifts=cfg.shift.n_shifts,
                                 proj_dim=cfg.model.proj_dim).to(self.device)
        if cfg.run.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.encoder = self._wrap(self.model)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.optim.kind, lr=cfg.optim.lr_init,
                                         momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        gather = functools.partial(gather_rows, ctx=ctx) if ctx.enabled else None
        self.loss_fn = ContrastiveShiftLoss(temperature=cfg.loss.temperature, mode=cfg.loss.mode,
                                            n_branches=cfg.n_branches, gather_rows=gather)
        self.generator = make_generator(cfg.run.seed + 1000 * ctx.rank)  # each process its own views
        dissolve = build_dissolver(cfg.dissolve, image_size=split.image_size, device=self.device)
        if cfg.dissolve.cache:  # steps look x̂₀ up by dataset index: the same draws and images as uncached
            dissolve = DissolveCache.build(dissolve, stack_images(split.train, self.device))
        self.train_data = IndexedDataset(split.train) if cfg.dissolve.cache else split.train
        self.make_views = functools.partial(
            make_views, shift_kind=cfg.shift.kind, n_shifts=cfg.shift.n_shifts,
            augment=SimCLRAugment(crop_scale=(cfg.augment.crop_scale_min, 1.0)).to(self.device),
            dissolve=dissolve, generator=self.generator)
        n_batches = -(-len(split.train) // (self.batch_size * ctx.world_size))
        self.steps_per_epoch = min(n_batches, cfg.optim.steps_per_epoch)
        self.lr_schedule = LRSchedule(steps_per_epoch=self.steps_per_epoch, lr_init=cfg.optim.lr_init,
                                      warmup_epochs=cfg.optim.warmup_epochs, epochs=cfg.optim.epochs)
        self.epoch, self.step, self.best_auroc = 0, 0, float("-inf")

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the training step calls: optionally SyncBN + DDP, optionally compiled."""
        if self.ctx.enabled:
            if self.cfg.run.sync_bn:
                model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=ids)
        return torch.compile(model) if self.cfg.run.compile else model

    # -- checkpoints ---------------------------------------------------------
    def _payload(self, with_state: bool, val_auroc: float | None) -> dict:
        payload = {"config": self.cfg.to_dict(), "model_spec": self.model.spec(),
                   "model": self.model.state_dict(), "epoch": self.epoch, "step": self.step,
                   "val_auroc": val_auroc, "best_val_auroc": self.best_auroc,
                   "image_size": self.split.image_size, "normal_classes": list(self.split.normal_classes)}
        if with_state:
            payload.update(optimizer=self.optimizer.state_dict(), generators=self._all_generator_states(),
                           rng=rng_state(), world_size=self.ctx.world_size)
        return payload

    def _all_generator_states(self) -> list[torch.Tensor]:
        """Every process's view generator, so a resumed torchrun run continues exactly too."""
        if not self.ctx.enabled:
            return [self.generator.get_state()]
        states: list = [None] * self.ctx.world_size
        torch.distributed.all_gather_object(states, self.generator.get_state())
        return states

    def resume(self, path: str) -> None:
        # Loaded on the CPU: load_state_dict moves weights and optimiser state to the model's device, and the
        # RNG states must stay CPU byte tensors (set_rng_state and Generator.set_state refuse CUDA tensors).
        ckpt = load_checkpoint(resolve_checkpoint(path, prefer=("last.pt",), flag="--resume_path"),
                               map_location="cpu")
        if "optimizer" not in ckpt:
            raise UserError(f"--resume_path {path}: this checkpoint has no optimiser state (use last.pt)")
        check_same_run(self.cfg, TrainConfig.from_dict(ckpt["config"]), path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("world_size", 1) == self.ctx.world_size:
            self.generator.set_state(ckpt["generators"][self.ctx.rank].cpu())
        set_rng_state(ckpt["rng"])
        self.epoch, self.step = ckpt["epoch"], ckpt["step"]
        self.best_auroc = ckpt["best_val_auroc"]

    # -- loop ------------------------------------------------------------------
    def validate(self) -> float | None:
        return validation_auroc(self.model, self.split, shift_kind=self.cfg.shift.kind,
                                n_shifts=self.cfg.shift.n_shifts, n_samples=self.cfg.run.val_samples,
                                seed=self.cfg.run.seed, batch_size=max(self.batch_size, 64),
                                device=self.device, amp=self.amp, ctx=self.ctx)

    def end_of_epoch(self, logger: RunLogger) -> dict:
        val_auroc = None
        if self.epoch % self.cfg.run.validate_every == 0 or self.epoch == self.cfg.optim.epochs:
            val_auroc = self.validate()
            if val_auroc is not None:
                logger.scalars(self.step, {"auroc": val_auroc}, prefix="val/")
            # Without anomalous validation images AUROC is undefined: `best` is then the latest (docs/own_data.md).
            if val_auroc is None or val_auroc > self.best_auroc:
                self.best_auroc = val_auroc if val_auroc is not None else self.best_auroc
                self._save("best.pt", False, val_auroc)
            if self.cfg.run.keep_checkpoints:
                # Upstream reports the best *test* AUROC over these; we only compute that figure afterwards,
                # labelled optimistic (scripts/studies/upstream_protocol.py), and select nothing with it.
                self._save(f"checkpoints/epoch{self.epoch:04d}.pt", False, val_auroc)
        if self.epoch % self.cfg.run.save_step == 0 or self.epoch == self.cfg.optim.epochs:
            self._save("last.pt", True, val_auroc)
        return {"val_auroc": val_auroc}

    def _save(self, name: str, with_state: bool, val_auroc: float | None) -> None:
        payload = self._payload(with_state, val_auroc)  # collective under torchrun: every rank calls it
        if self.ctx.is_main:
            save_checkpoint(self.logdir / name, payload)

    def fit(self, logger: RunLogger, stop_after_epoch: int | None = None) -> None:
        cfg = self.cfg
        while self.epoch < cfg.optim.epochs:
            if stop_after_epoch is not None and self.epoch >= stop_after_epoch:
                return
            t0 = time.time()
            batches = epoch_batches(self.train_data, self.batch_size, cfg.run.seed, self.epoch,
                                    cfg.data.num_workers, pin=self.device.type == "cuda", ctx=self.ctx)
            try:
                result = train_one_epoch(
                    model=self.encoder, batches=batches, steps=self.steps_per_epoch, make_views=self.make_views,
                    loss_fn=self.loss_fn, optimizer=self.optimizer, lr_schedule=self.lr_schedule, step=self.step,
                    device=self.device, amp=self.amp, logger=logger, show_progress=self.show_progress,
                    desc=f"epoch {self.epoch + 1}/{cfg.optim.epochs}")
            except FloatingPointError as err:
                raise UserError(diverged_message(str(err), f"--lr_init {cfg.optim.lr_init}",
                                                 self.logdir / "last.pt")) from None
            if result.first_views is not None:
                log_view_grids(logger, result.first_views)
            self.step, self.epoch = result.step, self.epoch + 1
            extra = self.end_of_epoch(logger)
            logger.scalars(self.step, {"epoch": self.epoch, "epoch_seconds": time.time() - t0, **result.metrics},
                           prefix="epoch/")
            if self.show_progress:
                val = extra["val_auroc"]
                print(f"epoch {self.epoch:4d} | loss {result.metrics.get('loss', float('nan')):.4f} | "
                      f"{time.time() - t0:5.1f}s" + (f" | val AUROC {val:.4f}" if val is not None else ""),
                      flush=True)


# What a run is: resuming may change --epochs, logging, validation and speed flags, never these.
# flag -> (config section, field)
RUN_IDENTITY = {
    "--dataset": ("data", "dataset"), "--one_class_idx": ("data", "one_class_idx"),
    "--normal_classes": ("data", "normal_classes"), "--split_seed": ("data", "split_seed"),
    "--image_size": ("data", "image_size"), "--contamination_ratio": ("data", "contamination_ratio"),
    "--mode/--shift_trans_type (dissolver)": ("dissolve", "method"),
    "--mode/--shift_trans_type (shift)": ("shift", "kind"),
    "--diffusion_model_path/--diffusion_checkpoint": ("dissolve", "checkpoint"),
    "--model": ("model", "backbone"), "--width": ("model", "width"), "--loss_mode": ("loss", "mode"),
    "--temperature": ("loss", "temperature"), "--batch_size": ("optim", "batch_size"),
    "--optimizer": ("optim", "kind"), "--lr_init": ("optim", "lr_init"), "--seed": ("run", "seed"),
}


def fit_backbone(cfg: TrainConfig, image_size: int) -> tuple[TrainConfig, str | None]:
    """``--model auto`` becomes the backbone that fits ``image_size`` (a resumed run keeps its checkpoint's); an
    explicit backbone is kept as given, with a warning line to print where its stem does not fit the images."""
    if cfg.model.backbone != AUTO_BACKBONE:
        return cfg, stem_mismatch(cfg.model.backbone, image_size)
    name = backbone_for(image_size)
    if cfg.run.resume_path:
        stored = load_checkpoint(resolve_checkpoint(cfg.run.resume_path, prefer=("last.pt",), flag="--resume_path"),
                                 map_location="cpu")
        name = stored["config"]["model"]["backbone"]
    return replace(cfg, model=replace(cfg.model, backbone=name)), None


def check_same_run(cfg: TrainConfig, stored: TrainConfig, path: str) -> None:
    """Refuse to resume a run under flags that change what it is (a CSI run continued as DIA, say)."""
    pairs = [(flag, getattr(getattr(cfg, section), name), getattr(getattr(stored, section), name))
             for flag, (section, name) in RUN_IDENTITY.items()]
    # the dissolver's own settings (the same method once the pairs above agree)
    pairs += [(f"--{name}", new, stored.dissolve.settings.get(name)) for name, new in cfg.dissolve.settings.items()]
    for flag, new, old in pairs:
        if new != old:
            raise UserError(f"--resume_path {path}: {flag} is {new!r} here but {old!r} in the checkpoint; "
                            "resuming cannot change what the run is (use a new --logdir)")


def diverged_message(what: str, lr_flag: str, last: Path) -> str:
    """One line for a run whose loss became non-finite: where, the likely cause, what is kept."""
    kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"
    return (f"training stopped, the loss became non-finite at {what}; likely cause: a learning rate too high "
            f"for this batch ({lr_flag}); {kept}")


def log_view_grids(logger: RunLogger, views) -> None:
    """The first images of each branch at k = 0..K-1, as TensorBoard grids."""
    rows = views.images.shape[0] // views.n_branches
    names = ["a", "b", "dissolved"]
    for branch in range(views.n_branches):
        block = views.images[branch * rows:(branch + 1) * rows]
        pick = block[:: views.batch_size][:8] if views.batch_size > 1 else block[:8]
        logger.images(f"views/{names[branch]}", pick, 0)


def _with_ddpm_checkpoint(cfg: TrainConfig, verbose: bool) -> TrainConfig:
    """``cfg`` with the dissolving DDPM's checkpoint folder resolved (``--diffusion_checkpoint``), so the
    run's config.json records exactly which checkpoint, and so which training step, dissolved."""
    folder = select_checkpoint(cfg.dissolve.checkpoint, cfg.dissolve.checkpoint_choice)
    step = load_meta(folder).step
    if verbose:
        print(f"dissolver: DDPM {folder} (step {step}, --diffusion_checkpoint {cfg.dissolve.checkpoint_choice})",
              flush=True)
    return replace(cfg, dissolve=replace(cfg.dissolve, checkpoint=str(folder)))


def run_training(cfg: TrainConfig, *, show_progress: bool = True, stop_after_epoch: int | None = None) -> Path:
    """Train and return the log dir (holding last.pt, best.pt, metrics.jsonl, tb/).

    Under torchrun every process runs this; only rank 0 logs and writes checkpoints.
    """
    ctx, device = init_distributed(cfg.run.dist_backend, cfg.run.device)
    if ctx.is_main:
        make_output_dir(Path(cfg.run.logdir), "--logdir")  # before any work: a bad --logdir fails in one line, at once
    seed_everything(cfg.run.seed)  # the same initial weights on every process
    split = load_split(cfg.data)
    if cfg.dissolve.method == "ddpm":
        cfg = _with_ddpm_checkpoint(cfg, verbose=ctx.is_main and show_progress)
        warning = check_ddpm_data(cfg.dissolve.checkpoint, cfg.data, split)
        if warning and ctx.is_main:
            print(warning, flush=True)
    trainer = Trainer(cfg, split, show_progress=show_progress, ctx=ctx, device=device)
    if cfg.run.resume_path:
        trainer.resume(cfg.run.resume_path)
    cfg = trainer.cfg  # --model auto resolved
    if ctx.is_main:
        (trainer.logdir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    logger = RunLogger(trainer.logdir, enabled=ctx.is_main)
    if trainer.show_progress:
        print(f"train: {len(split.train)} normal images, {split.image_size} px | model {cfg.model.backbone} | "
              f"batch {trainer.batch_size} x {ctx.world_size} process(es) = {trainer.batch_size * ctx.world_size} "
              f"images, x{cfg.shift.n_shifts} shifts x{cfg.n_branches} branches | {trainer.steps_per_epoch} "
              f"steps/epoch | device {trainer.device} | logdir {trainer.logdir}", flush=True)
    try:
        trainer.fit(logger, stop_after_epoch=stop_after_epoch)
    finally:
        logger.close()
        barrier(ctx)
    shutdown(ctx)
    return trainer.logdir
