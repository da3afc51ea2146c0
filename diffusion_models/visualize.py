"""``--mode eval``: pictures and numbers a person looks at to judge a DDPM.

Writes into ``<checkpoint>/eval/`` (or ``out_dir``):
- ``dissolve_{raw,ema}.png``: rows are validation images (normal, then
  anomalous), columns the dissolver's one-step x̂₀ at t ∈ {0, 50, …, 800};
- ``dissolve_diff_{raw,ema}.png``: |x̂₀ − x|, each cell scaled to its own
  maximum (printed under it), because at t ≤ 100 the change is too small to
  see directly;
- ``samples_<weights>.png``: ancestral DDPM samples from pure noise;
- ``val_losses.json``: mean ε-L1 at t ∈ [30, 100) on normal and anomalous
  validation images, for both weights, and the dissolver diagnostic: mean
  |x − x̂₀| on normal and anomalous validation images at t ∈ {30, 50, 99} and
  their ratio (:mod:`diffusion_models.diagnostic`);
- ``dissolve_change.png``: that change against t, normal vs anomalous;
- for a run folder whose DDPM kept its steps (``--keep_checkpoints``), ``along_training.{json,md,png}``:
  ε-loss, change ratio and change AUROC of every kept checkpoint against steps and passes
  (:mod:`diffusion_models.along_training`).
All images are shown at the DDPM resolution, i.e. as the DDPM sees them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DModel
from matplotlib.figure import Figure
from torchvision.utils import save_image
from tqdm import tqdm

from common.atomic import atomic_path, json_dump_atomic
from common.device import default_device
from common.errors import UserError
from diffusion_models.along_training import kept_steps, markdown_table, measure_run, plot_rows, rows_to_json
from diffusion_models.checkpoint import DDPMCheckpoint, load_ddpm
from diffusion_models.diagnostic import PLOT_T, REPORT_T, ChangeTable, dissolve_change, plot_change
from diffusion_models.dissolver import Dissolver
from diffusion_models.trainer import DDPMData, load_ddpm_data
from diffusion_models.unet import DISSOLVE_T, make_probe, probe_loss

GRID_T = (0, 50, 100, 200, 400, 800)

# --sample_steps by device: the full 1000 where a GPU makes them seconds; on a CPU 1000 steps take minutes and
# 100 evenly spaced ones give samples good enough to judge a DDPM by.
CUDA_SAMPLE_STEPS, CPU_SAMPLE_STEPS = 1000, 100


def sample_steps_for(device: torch.device, steps: int | None = None) -> int:
    """``steps`` if given, else the device's default (CUDA_SAMPLE_STEPS on CUDA, CPU_SAMPLE_STEPS elsewhere)."""
    if steps is not None:
        return steps
    return CUDA_SAMPLE_STEPS if device.type == "cuda" else CPU_SAMPLE_STEPS


@dataclass(frozen=True)
class DDPMEvalConfig:
    load_path: str
    out_dir: str | None = None
    data_root: str | None = None  # None: the data_root stored in the checkpoint's training config
    download: bool = False
    rows_per_kind: int = 4
    num_samples: int = 16
    sample_steps: int | None = None  # None: by device, sample_steps_for
    val_repeats: int = 4
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        for name in ("rows_per_kind", "num_samples", "sample_steps", "val_repeats"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name} must be positive")
        if self.sample_steps is not None and self.sample_steps > 1000:
            raise UserError("--sample_steps must be at most 1000 (the number of training timesteps)")


@dataclass(frozen=True)
class EvalResult:
    """``losses[weights][kind]``: mean ε-L1 at t ∈ [30, 100); None where the split has no such images."""

    out_dir: Path
    files: tuple[Path, ...]
    losses: dict[str, dict[str, float | None]]
    preferred: str
    change: ChangeTable  # mean |x − x̂₀| at REPORT_T, normal vs anomalous validation images
    along_training: tuple[str, ...] = ()  # the kept checkpoints' table (markdown lines), when the run kept any


@torch.no_grad()
def dissolve_series(dissolver: Dissolver, images: torch.Tensor, ts: tuple[int, ...]) -> torch.Tensor:
    """(n, C, S, S) in [0, 1] → (n, len(ts), C, S, S): each image dissolved at each fixed t."""
    return torch.stack([dissolver(images, t=t) for t in ts], dim=1)


@torch.no_grad()
def ancestral_samples(unet: UNet2DModel, scheduler: DDPMScheduler, n: int, steps: int,
                      generator: torch.Generator, show_progress: bool = False) -> torch.Tensor:
    """(n, C, R, R) in [0, 1] by ancestral DDPM sampling over ``steps`` evenly spaced timesteps."""
    scheduler = DDPMScheduler.from_config(scheduler.config)
    scheduler.set_timesteps(steps)
    cfg = unet.config
    device = next(unet.parameters()).device
    x = torch.randn((n, cfg.in_channels, cfg.sample_size, cfg.sample_size), generator=generator).to(device)
    for t in tqdm(scheduler.timesteps, desc="sampling", leave=False, disable=not show_progress, dynamic_ncols=True):
        eps = unet(x, t.to(device)).sample
        x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return ((x + 1) / 2).clamp(0, 1)


def plot_grid(grid: torch.Tensor, row_labels: list[str], col_labels: list[str], title: str, path: Path,
              notes: list[list[str]] | None = None) -> None:
    """grid: (rows, cols, C, H, W) in [0, 1] → a labelled PNG; ``notes[r][c]`` goes under a cell."""
    rows, cols = grid.shape[:2]
    fig = Figure(figsize=(1.4 * cols + 0.8, 1.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.imshow(grid[r, c].permute(1, 2, 0).cpu().numpy(), vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8)
            if notes:
                ax.set_xlabel(notes[r][c], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _grid_rows(data: DDPMData, per_kind: int) -> tuple[torch.Tensor, list[str]]:
    normal, anomalous = data.val_normal[:per_kind], data.val_anomalous[:per_kind]
    labels = [f"normal {i}" for i in range(len(normal))] + [f"anomalous {i}" for i in range(len(anomalous))]
    return torch.cat([normal, anomalous]), labels


def _write_grids(ckpt: DDPMCheckpoint, data: DDPMData, cfg: DDPMEvalConfig, out: Path) -> list[Path]:
    images, labels = _grid_rows(data, cfg.rows_per_kind)
    device = next(ckpt.unet.parameters()).device
    images = images.to(device)
    res, cols = ckpt.meta.resolution, [f"t={t}" for t in GRID_T]
    files = []
    for weights in ("raw", "ema"):
        dissolver = Dissolver(ckpt.weights(weights), ckpt.alphas_cumprod, res, res).to(device)
        series = dissolve_series(dissolver, images, GRID_T)
        diff = (series - images[:, None]).abs()
        peak = diff.flatten(2).amax(2)  # (rows, cols)
        notes = [[f"max {v:.3f}" for v in row] for row in peak.tolist()]
        where = f"{ckpt.meta.dataset} step {ckpt.meta.step}, {weights} weights, {res} px"
        files.append(out / f"dissolve_{weights}.png")
        plot_grid(series, labels, cols, f"dissolved x̂₀ — {where}", files[-1])
        files.append(out / f"dissolve_diff_{weights}.png")
        plot_grid(diff / peak.clamp_min(1e-8)[..., None, None, None], labels, cols,
                  f"|x̂₀ − x|, each cell scaled to its own max — {where}", files[-1], notes)
    return files


def _val_losses(ckpt: DDPMCheckpoint, data: DDPMData, cfg: DDPMEvalConfig) -> dict[str, dict[str, float | None]]:
    probes = {kind: make_probe(images * 2 - 1, *DISSOLVE_T, cfg.val_repeats, cfg.seed)
              for kind, images in (("normal", data.val_normal), ("anomalous", data.val_anomalous))}
    losses = {}
    for weights in ("raw", "ema"):
        values = {kind: probe_loss(ckpt.weights(weights), probe, ckpt.alphas_cumprod) for kind, probe in probes.items()}
        losses[weights] = {kind: None if math.isnan(v) else v for kind, v in values.items()}
    return losses


def run_eval(cfg: DDPMEvalConfig, show_progress: bool = True) -> EvalResult:
    """Load a DDPM checkpoint and write its grids, samples and validation losses."""
    device = default_device(cfg.device)
    ckpt = load_ddpm(cfg.load_path, device=device)
    meta, stored = ckpt.meta, ckpt.meta.config
    run = Path(cfg.load_path)
    along = bool(kept_steps(run))
    data = load_ddpm_data(meta.dataset, cfg.data_root or stored.get("data_root"), meta.one_class_idx,
                          meta.resolution, download=cfg.download, split_seed=meta.split_seed, with_train=along,
                          normal_classes=meta.normal_classes if stored.get("normal_classes") else None)
    out = Path(cfg.out_dir) if cfg.out_dir else ckpt.path / "eval"
    out.mkdir(parents=True, exist_ok=True)
    files = _write_grids(ckpt, data, cfg, out)
    preferred = meta.val.preferred
    generator = torch.Generator().manual_seed(cfg.seed)
    steps = sample_steps_for(device, cfg.sample_steps)
    if cfg.sample_steps is None and show_progress:
        print(f"sampling: {steps} steps on {device.type} (--sample_steps; default {CUDA_SAMPLE_STEPS} on CUDA, "
              f"{CPU_SAMPLE_STEPS} elsewhere)", flush=True)
    samples = ancestral_samples(ckpt.weights(preferred), ckpt.scheduler, cfg.num_samples, steps, generator,
                                show_progress=show_progress)
    files.append(out / f"samples_{preferred}.png")
    with atomic_path(files[-1]) as tmp:
        save_image(samples, tmp, format="png", nrow=math.ceil(math.sqrt(cfg.num_samples)), padding=1)
    losses = _val_losses(ckpt, data, cfg)
    nets = {"raw": ckpt.unet, "ema": ckpt.unet_ema}
    change = dissolve_change(nets, ckpt.alphas_cumprod, data.val_normal, data.val_anomalous, REPORT_T)
    files.append(out / "dissolve_change.png")
    plot_change(dissolve_change(nets, ckpt.alphas_cumprod, data.val_normal, data.val_anomalous, PLOT_T),
                files[-1], f"dissolving change, validation images — {meta.dataset} step {meta.step}")
    files.append(out / "val_losses.json")
    json_dump_atomic({"checkpoint": str(ckpt.path), "step": meta.step, "t_range": list(DISSOLVE_T),
                      "t_range_note": "half-open, t uniform", "preferred": preferred, "losses": losses,
                      "dissolve_change": change,
                      "dissolve_change_note": "mean |x - x0_hat| in [0, 1] pixel units at the DDPM resolution; "
                                              "ratio = anomalous / normal"},
                     files[-1])
    table: list[str] = []
    if along:
        rows = measure_run(run, data.val_normal, data.val_anomalous, n_train=len(data.train),
                           device=next(ckpt.unet.parameters()).device)
        table = markdown_table(rows)
        files += [out / "along_training.json", out / "along_training.md", out / "along_training.png"]
        json_dump_atomic({"run": str(run), "rows": rows_to_json(rows)}, files[-3])
        with atomic_path(files[-2]) as tmp:
            Path(tmp).write_text("\n".join(table) + "\n")
        plot_rows(rows, files[-1], f"{meta.dataset} normal class {'+'.join(meta.normal_classes)}: kept checkpoints")
    return EvalResult(out, tuple(files), losses, preferred, change, tuple(table))
