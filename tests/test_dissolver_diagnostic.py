"""scripts/diagnostics/dissolver_diagnostic.py: the trained DDPM beside its controls on validation images."""
import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from diffusion_models.trainer import DDPMTrainConfig, run_training

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("dissolver_diagnostic", REPO / "scripts" / "diagnostics" / "dissolver_diagnostic.py")
diagnostic = importlib.util.module_from_spec(spec)
spec.loader.exec_module(diagnostic)
torch.set_num_threads(1)


def test_per_image_change_is_the_mean_absolute_difference_per_image():
    images = torch.rand(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert np.allclose(diagnostic.per_image_change(lambda x: x, images), 0)
    shifted = diagnostic.per_image_change(lambda x: (x + 0.25).clamp(max=1), images)
    expected = ((images + 0.25).clamp(max=1) - images).abs().flatten(1).mean(1).numpy()
    assert np.allclose(shifted, expected)


def test_table_lists_the_ddpm_and_its_controls(tmp_path, capsys):
    cfg = DDPMTrainConfig(dataset="synthetic", image_size=32, dim=8, dim_mults=(1, 2), batch_size=4, grad_accum=1,
                          train_steps=2, val_every=2, save_every=2, val_repeats=1, save_dir=str(tmp_path))
    run_training(replace(cfg), show_progress=False)
    diagnostic.main(["--ddpm", str(tmp_path), "--t", "30"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row.split(" | ")[0][2:] for row in rows[1:]]
    assert names[:3] == ["DDPM raw, t=30", "DDPM EMA, t=30", "UNet untrained, t=30"]
    assert {"gaussian blur k=7", "median blur k=3", "noise std=0.05"} <= set(names)
    for row in rows[1:]:
        normal, anomalous, ratio = (float(v) for v in row.split(" | ")[1:4])
        # printed with 4 and 2 decimals: the rounding bound
        assert abs(ratio - anomalous / normal) <= 0.005 + ratio * 5e-5 * (1 / anomalous + 1 / normal) + 1e-9
