"""CUDA checks, run by ``scripts/gpu/gpu_paper.sh`` (``pytest -m gpu``); skipped without CUDA.

Tolerances, and why:
- fp32 on CUDA vs CPU (TF32 off): one training step's loss to 1e-4 relative and its parameters to
  1e-3 relative / 1e-5 absolute; the dissolver's x̂₀ to 1e-4 in [0, 1] pixel units (different
  summation orders in cuDNN and oneDNN, nothing more).
- bf16 fast path (encoder under bf16 autocast + channels_last, loss in fp32): the loss within
  2 % (+0.02 absolute) of fp32: bf16 keeps 8 mantissa bits, ~0.4 % per rounding.
- bf16 dissolver: x̂₀ within 0.02 pixel units of fp32 (x̂₀ removes at most 0.17·ε̂ at t <= 99).
- torchrun with one process equals a plain run (the same code path: a world of one) to 1e-3.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.checkpoint import load_checkpoint
from common.shifts import shift_labels, stack_shifts
from diffusion_models.dissolve_cache import DissolveCache
from diffusion_models.dissolver import Dissolver
from diffusion_models.unet import build_scheduler, build_unet
from models import build_model
from training.engine import train_one_epoch
from training.losses import ContrastiveShiftLoss
from training.optim import LRSchedule, build_optimizer
from training.views import ViewBatch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
REPO = Path(__file__).resolve().parents[1]
K, B = 4, 4


@pytest.fixture(autouse=True)
def exact_fp32():
    """TF32 off and no autotuning, so the fp32 comparisons compare fp32."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = torch.backends.cudnn.benchmark = False
    yield
    (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark) = saved


def fixed_views(x: torch.Tensor) -> ViewBatch:
    """Deterministic DIA branches (no random draws, so CPU and CUDA see the same rows)."""
    images = torch.cat([stack_shifts(x, "rotation", K), stack_shifts(x.flip(3), "rotation", K),
                        stack_shifts(0.5 * x, "rotation", K)])
    return ViewBatch(images=images, shift_labels=shift_labels(x.shape[0], K, 3, device=x.device), n_branches=3,
                     batch_size=x.shape[0])


def one_step(device: str, amp: bool = False, channels_last: bool = False) -> tuple[float, dict]:
    """The loss of one engine step and the parameters after it (CPU copies)."""
    torch.manual_seed(0)
    model = build_model("resnet18", width=16).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(B, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    result = train_one_epoch(
        model=model, batches=[(x, torch.zeros(B))], steps=1, make_views=fixed_views,
        loss_fn=ContrastiveShiftLoss(n_branches=3), optimizer=build_optimizer(model.parameters(), "lars", lr=0.1),
        lr_schedule=LRSchedule(steps_per_epoch=1, lr_init=0.1, warmup_epochs=0, epochs=1), step=0,
        device=torch.device(device), amp=amp, show_progress=False)
    return result.metrics["loss"], {k: v.detach().float().cpu() for k, v in model.state_dict().items()}


def test_training_step_on_cuda_equals_cpu_step():
    cpu_loss, cpu_params = one_step("cpu")
    cuda_loss, cuda_params = one_step("cuda")
    assert cuda_loss == pytest.approx(cpu_loss, rel=1e-4)
    for name, value in cpu_params.items():
        torch.testing.assert_close(cuda_params[name], value, rtol=1e-3, atol=1e-5, msg=name)


def test_bf16_fast_path_loss_stays_near_fp32():
    fp32_loss, _ = one_step("cuda")
    bf16_loss, params = one_step("cuda", amp=True, channels_last=True)
    assert abs(bf16_loss - fp32_loss) <= 0.02 * abs(fp32_loss) + 0.02, (bf16_loss, fp32_loss)
    assert all(torch.isfinite(v).all() for v in params.values())


def dissolver(device: str, dim: int = 64, mults: tuple = (1, 2, 4, 8), **kwargs) -> Dissolver:
    torch.manual_seed(0)
    unet = build_unet(dim, mults, 32)
    return Dissolver(unet, build_scheduler().alphas_cumprod, image_size=28, resolution=32, **kwargs).to(device)


def test_dissolver_on_cuda_equals_cpu_dissolver():
    x = torch.rand(8, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    t = torch.arange(30, 100, 9)
    expected = dissolver("cpu")(x, t=t)
    torch.testing.assert_close(dissolver("cuda")(x.cuda(), t=t.cuda()).cpu(), expected, rtol=0, atol=1e-4)


def test_bf16_and_graph_captured_dissolvers_stay_near_fp32():
    x = torch.rand(8, 3, 28, 28, device="cuda", generator=torch.Generator("cuda").manual_seed(3))
    t = torch.arange(30, 100, 9, device="cuda")
    reference = dissolver("cuda", 16, (1, 2, 2))(x, t=t)
    bf16 = dissolver("cuda", 16, (1, 2, 2), unet_dtype="bf16")(x, t=t)
    assert (bf16 - reference).abs().max() <= 0.02
    graphs = dissolver("cuda", 16, (1, 2, 2), graphs=True)
    for _ in range(3):  # warm-up, capture, replay
        captured = graphs(x, t=t).clone()
    torch.testing.assert_close(captured, reference, rtol=0, atol=1e-3)


def test_dissolve_cache_on_cuda_matches_the_dissolver():
    d = dissolver("cuda", 16, (1, 2, 2), t_range=(30, 33))
    images = torch.rand(6, 3, 28, 28, device="cuda")
    cache = DissolveCache.build(d, images)
    index = torch.tensor([4, 1, 1], device="cuda")
    gen_a, gen_b = (torch.Generator("cuda").manual_seed(5) for _ in range(2))
    uncached = d(torch.where((torch.rand(3, generator=gen_a, device="cuda") < 0.5).view(-1, 1, 1, 1),
                             images[index].flip(-1), images[index]), generator=gen_a)
    torch.testing.assert_close(cache.flip_and_dissolve(images[index], index, gen_b), uncached, rtol=0, atol=1e-4)


def train_run(logdir: Path, prefix: list[str]) -> dict:
    args = [sys.executable, *prefix, "train.py", "--dataset", "synthetic", "--model", "resnet18", "--width", "8",
            "--batch_size", "8", "--steps_per_epoch", "3", "--epochs", "1", "--warmup", "0.5", "--mode", "simclr_CSI",
            "--shift_trans_type", "rotation", "--val_samples", "1", "--device", "cuda", "--logdir", str(logdir)]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_checkpoint(logdir / "last.pt")["model"]


def test_torchrun_one_process_equals_a_plain_run(tmp_path):
    plain = train_run(tmp_path / "plain", [])
    launched = train_run(tmp_path / "torchrun", ["-m", "torch.distributed.run", "--nproc_per_node", "1",
                                                 "--master_port", "29541"])
    for name, value in plain.items():
        torch.testing.assert_close(launched[name].float(), value.float(), rtol=1e-3, atol=1e-4, msg=name)
