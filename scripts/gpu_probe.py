"""What ``scripts/gpu_paper.py`` measures in its own process: the machine, and the bf16 dissolver's error.

The dissolver's UNet forward in bf16 (``--dissolve_dtype bf16``) is checked against fp32 on the
task's normal validation images, with the trained DDPM, at t spread over [30, 99].
"""
from __future__ import annotations

import sys
from importlib import metadata

import torch

MODULES = ("torchvision", "numpy", "diffusers", "kornia", "kornia_rs", "medmnist")


def environment() -> dict:
    """Versions, the card and its free memory; printed and returned."""
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "cuda": torch.cuda.is_available()}
    for name in MODULES:  # the installed distribution's version, without paying for the import
        try:
            env[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:  # reported, not fatal: the stage that needs it fails in its log
            env[name] = "missing"
    if env["cuda"]:
        free, total = torch.cuda.mem_get_info()
        env.update(card=torch.cuda.get_device_name(0), capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   free_gib=round(free / 2**30, 1), total_gib=round(total / 2**30, 1))
    else:
        env["card"] = f"CPU ({torch.get_num_threads()} threads)"
    print("environment: " + " | ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    return env


@torch.no_grad()
def dissolve_eps_error(ddpm_dir, dataset: str, data_root, normal_class: int, max_images: int = 256) -> dict:
    """ε and x̂₀ of the bf16 UNet forward against fp32 (TF32 off) on normal validation images."""
    from common.config import DataConfig
    from datasets.from_config import load_split
    from diffusion_models.dissolver import Dissolver

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    split = load_split(DataConfig(dataset=dataset, data_root=str(data_root), one_class_idx=normal_class))
    rows = [i for i in range(len(split.val)) if split.val.is_anomaly[i] == 0][:max_images]
    x = torch.stack([split.val[i][0] for i in rows]).to(device)  # (N, 3, S, S) in [0, 1]
    t = torch.arange(len(x), device=device) % 70 + 30
    fp32, bf16 = (Dissolver.from_checkpoint(ddpm_dir, image_size=split.image_size, device=device, unet_dtype=d)
                  for d in ("fp32", "bf16"))
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        z = 2 * fp32.resampler.down(x) - 1  # the "normalized" input range
        e32, e16 = fp32.predict_eps(z, t), bf16.predict_eps(z, t)
        x0_diff = (bf16(x, t=t) - fp32(x, t=t)).abs()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    result = {"n_images": len(x), "device": str(device),
              "eps_rel_l2": round(float((e16 - e32).norm() / e32.norm()), 5),
              "eps_max_abs": round(float((e16 - e32).abs().max()), 5),
              "x0_max_abs_pixels": round(float(x0_diff.max()), 5), "x0_mean_abs_pixels": float(x0_diff.mean())}
    print(f"bf16 dissolver vs fp32 ({dataset} c{normal_class}, {len(x)} validation images): {result}", flush=True)
    return result
