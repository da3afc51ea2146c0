"""CSINet and the ResNet-18 backbones: shapes, width, spec round trip, input normalisation."""
import pytest
import torch
from torch import nn

from common.errors import UserError
from models import BACKBONES, CSINet, EncoderOutput, build_model

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "name,width,size",
    [("resnet18", 8, 28), ("resnet18", 8, 32), ("resnet18_imagenet", 4, 224), ("resnet18_imagenet", 4, 32)],
)
def test_output_shapes(name, width, size):
    model = build_model(name, width=width, n_shifts=4, proj_dim=16).eval()
    out = model(torch.rand(2, 3, size, size))
    assert isinstance(out, EncoderOutput)
    assert out.features.shape == (2, 8 * width)
    assert out.projection.shape == (2, 16)
    assert out.shift_logits.shape == (2, 4)


def test_width_changes_feature_dim_and_standard_size():
    assert build_model("resnet18", width=4).backbone.out_dim == 32
    standard = build_model("resnet18", width=64)
    assert standard.backbone.out_dim == 512
    assert standard.projection[0].in_features == 512 and standard.projection[2].out_features == 128
    assert standard.shift_head.out_features == 4
    # ResNet-18 body (11.17M with the 7×7 stem, less 7,680 for the 3×3 stem) + heads (330,372).
    assert sum(p.numel() for p in standard.parameters()) == 11_176_512 - 7_680 + 330_372


def test_stems():
    cifar = build_model("resnet18", width=4).backbone.stem
    imagenet = build_model("resnet18_imagenet", width=4).backbone.stem
    assert cifar[0].kernel_size == (3, 3) and cifar[0].stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in cifar)
    assert imagenet[0].kernel_size == (7, 7) and imagenet[0].stride == (2, 2)
    assert any(isinstance(m, nn.MaxPool2d) for m in imagenet)


def test_kaiming_init():
    model = build_model("resnet18", width=16)
    conv = model.backbone.stages[1][0].conv1  # 16 -> 32 channels, 3×3, fan_out = 32·9
    expected_std = (2.0 / (32 * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.1)
    bn = model.backbone.stages[0][0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


def test_normalisation_inside():
    model = build_model("resnet18", width=4, proj_dim=8).eval()
    x = torch.rand(3, 3, 28, 28)
    out = model(x)
    features = model.backbone((x - 0.5) / 0.5)
    assert torch.allclose(out.features, features, atol=1e-6)
    assert torch.allclose(out.projection, model.projection(features), atol=1e-6)
    assert torch.allclose(out.shift_logits, model.shift_head(features), atol=1e-6)
    assert not torch.allclose(out.features, model.backbone(x), atol=1e-3)


def test_spec_round_trip():
    model = build_model("resnet18_imagenet", width=4, n_shifts=3, proj_dim=8)
    spec = model.spec()
    assert spec == {"name": "resnet18_imagenet", "width": 4, "n_shifts": 3, "proj_dim": 8}
    clone = build_model(**spec)
    clone.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    model.eval(), clone.eval()
    for got, want in zip(clone(x), model(x)):
        assert torch.equal(got, want)


def test_channels_last_and_bf16_autocast():
    model = build_model("resnet18", width=4, proj_dim=8).eval()
    x = torch.rand(2, 3, 28, 28)
    reference = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out.projection, reference.projection, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert low.projection.dtype == torch.bfloat16
    assert torch.allclose(low.projection.float(), reference.projection, atol=0.1, rtol=0.1)


def test_backward_reaches_all_parameters():
    model = build_model("resnet18", width=4, proj_dim=8)
    out = model(torch.rand(4, 3, 28, 28))
    (out.projection.sum() + out.shift_logits.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_bad_names_and_values():
    with pytest.raises(UserError, match="resnet18_imagenet"):
        build_model("resnet50")
    with pytest.raises(UserError, match="width"):
        build_model("resnet18", width=0)
    assert set(BACKBONES) == {"resnet18", "resnet18_imagenet"}
    assert isinstance(build_model("resnet18", width=2), CSINet)
