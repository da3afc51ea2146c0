"""DDP on CPU with the gloo backend, two processes (torchrun training).

The contrastive loss gathers projections with a gradient-carrying all-gather, so
two processes holding half a batch each must see the same loss and, after DDP's
gradient averaging, the same gradients as one process holding the whole batch.
"""
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from common.distributed import DistContext, gather_rows, per_process_batch
from common.errors import UserError
from common.shifts import shift_labels, stack_shifts
from models import build_model
from training.losses import ContrastiveShiftLoss

REPO = Path(__file__).resolve().parents[1]
WORLD, B_LOCAL, K = 2, 3, 4


def fixed_views(x: torch.Tensor, n_branches: int) -> torch.Tensor:
    """Deterministic branches (no random flips/augmentation): a = x, b = flipped x, d = darkened x."""
    branches = [stack_shifts(x, "rotation", K), stack_shifts(x.flip(3), "rotation", K)]
    if n_branches == 3:
        branches.append(stack_shifts(0.5 * x, "rotation", K))
    return torch.cat(branches)


def one_step(model, x, n_branches, gather=None):
    """Loss terms and parameter gradients of one step; BN in eval mode so rows are independent."""
    loss_fn = ContrastiveShiftLoss(temperature=0.5, mode="shifted_removed", n_branches=n_branches,
                                   gather_rows=gather)
    out = model(fixed_views(x, n_branches))
    terms = loss_fn(out.projection, out.shift_logits, shift_labels(x.shape[0], K, n_branches))
    terms.total.backward()
    module = model.module if isinstance(model, DistributedDataParallel) else model
    return terms.contrastive.detach(), {n: p.grad.clone() for n, p in module.named_parameters()}


def _reference_model():
    torch.manual_seed(0)
    return build_model("resnet18", width=4).eval()


def _worker(rank: int, init_file: str, out_dir: str, n_branches: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    ctx = DistContext(rank=rank, world_size=WORLD, local_rank=rank)
    x = torch.rand(WORLD * B_LOCAL, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    model = DistributedDataParallel(_reference_model())
    loss, grads = one_step(model, x[rank * B_LOCAL:(rank + 1) * B_LOCAL], n_branches,
                           gather=lambda z: gather_rows(z, ctx))
    torch.save({"loss": loss, "grads": grads}, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.parametrize("n_branches", [3, 2], ids=["DIA", "CSI"])
def test_two_processes_equal_one_process_with_the_whole_batch(n_branches, tmp_path):
    init_file = tempfile.mktemp(dir=tmp_path)
    mp.start_processes(_worker, args=(init_file, str(tmp_path), n_branches), nprocs=WORLD, start_method="spawn")
    x = torch.rand(WORLD * B_LOCAL, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ref_loss, ref_grads = one_step(_reference_model(), x, n_branches)
    for rank in range(WORLD):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(got["loss"], ref_loss, rtol=1e-5, atol=1e-6)
        for name, grad in ref_grads.items():
            torch.testing.assert_close(got["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_global_batch_must_divide_by_the_world_size():
    assert per_process_batch(32, None, 4) == 32  # --batch_size is per process, as upstream
    assert per_process_batch(32, 64, 2) == 32
    with pytest.raises(UserError, match="--global_batch_size"):
        per_process_batch(32, 63, 2)


def test_torchrun_two_processes_train_then_eval(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    logdir = tmp_path / "run"
    train = (f"-m torch.distributed.run --nproc_per_node 2 --master_port 29533 train.py --dataset synthetic "
             f"--model resnet18 --width 4 --batch_size 8 --steps_per_epoch 2 --epochs 2 --warmup 0.5 "
             f"--mode simclr_DIA --shift_trans_type blurgaussian_rotation --kernel_size 3 --val_samples 1 "
             f"--logdir {logdir}")
    proc = subprocess.run([sys.executable, *shlex.split(train)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in logdir.glob("*.pt")) == ["best.pt", "last.pt"]
    assert "x 2 process(es)" in proc.stdout
    evaluate = (f"-m torch.distributed.run --nproc_per_node 2 --master_port 29534 eval.py --load_path {logdir} "
                f"--ood_samples 1 --n_boot 20 --out_dir {tmp_path / 'eval'}")
    proc = subprocess.run([sys.executable, *shlex.split(evaluate)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((tmp_path / "eval").glob("report.json"))) == 1
