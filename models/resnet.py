"""ResNet-18 backbones with a width option and two stems.

The residual blocks are torchvision's ``BasicBlock``; only the stem and the
channel widths are ours. torchvision's own ``ResNet`` fixes the widths at
(64, 128, 256, 512), so a small class assembles the same network for any base
width ``w``: stages of (w, 2w, 4w, 8w) channels, two blocks each.

- ``"cifar"`` stem: 3×3 stride-1 conv, no max-pool, for 28/32 px inputs (the
  upstream ``--model resnet18``). A 7×7 stride-2 stem plus max-pool would
  shrink a 28 px image to 7 px before the first block.
- ``"imagenet"`` stem: 7×7 stride-2 conv and 3×3 stride-2 max-pool, for 224 px
  inputs (the upstream ``--model resnet18_imagenet``).

Both end in adaptive average pooling, so any input size of at least a few
pixels gives a ``(B, 8w)`` feature. No pretrained weights are ever loaded.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

BLOCKS_PER_STAGE = (2, 2, 2, 2)


def cifar_stem(width: int) -> nn.Sequential:
    """(B, 3, H, W) -> (B, w, H, W): keeps the resolution of small images."""
    return nn.Sequential(
        nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    )


def imagenet_stem(width: int) -> nn.Sequential:
    """(B, 3, H, W) -> (B, w, ⌈H/4⌉, ⌈W/4⌉), as torchvision's ResNet."""
    return nn.Sequential(
        nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )


STEMS: dict[str, Callable[[int], nn.Sequential]] = {"cifar": cifar_stem, "imagenet": imagenet_stem}


def make_stage(in_channels: int, channels: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` BasicBlocks; the first one changes stride/channels through a 1×1 shortcut."""
    downsample = None
    if stride != 1 or in_channels != channels:
        downsample = nn.Sequential(conv1x1(in_channels, channels, stride), nn.BatchNorm2d(channels))
    layers = [BasicBlock(in_channels, channels, stride, downsample)]
    layers += [BasicBlock(channels, channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet18(nn.Module):
    """ResNet-18 feature extractor: (B, 3, H, W) normalised input -> (B, 8·width) features.

    The input is expected already normalised (``CSINet`` does it); this module
    is the bare backbone so it can be reused or swapped through ``BACKBONES``.
    """

    def __init__(self, stem: str = "cifar", width: int = 64) -> None:
        super().__init__()
        self.stem = STEMS[stem](width)
        widths = [width * 2**i for i in range(4)]
        stages, in_channels = [], width
        for i, (channels, blocks) in enumerate(zip(widths, BLOCKS_PER_STAGE)):
            stages.append(make_stage(in_channels, channels, blocks, stride=1 if i == 0 else 2))
            in_channels = channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = widths[-1]
        self._init_weights()

    def _init_weights(self) -> None:
        # As torchvision: Kaiming-normal (fan_out) convs, BN γ=1 β=0, no zero-init residual.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) normalised to about [-1, 1] -> (B, 8·width) pooled features."""
        return torch.flatten(self.pool(self.stages(self.stem(x))), 1)


def resnet18(width: int = 64) -> ResNet18:
    """CIFAR-stem ResNet-18 for 28/32 px images (upstream ``--model resnet18``)."""
    return ResNet18(stem="cifar", width=width)


def resnet18_imagenet(width: int = 64) -> ResNet18:
    """ImageNet-stem ResNet-18 for 224 px images (upstream ``--model resnet18_imagenet``)."""
    return ResNet18(stem="imagenet", width=width)


BACKBONES: dict[str, Callable[[int], ResNet18]] = {
    "resnet18": resnet18,
    "resnet18_imagenet": resnet18_imagenet,
}
BACKBONE_STEMS = {"resnet18": "cifar", "resnet18_imagenet": "imagenet"}

# The CIFAR stem is for 28/32 px images (MedMNIST, CIFAR). Above that it runs the blocks at 4x the side of the
# ImageNet stem (16x the compute: at 64 px it trained ~15x slower on a CPU), so 64 px data gets the ImageNet stem;
# at or below 32 px the ImageNet stem would shrink the image 4x before the first block.
CIFAR_STEM_MAX_PX = 32


def backbone_for(image_size: int) -> str:
    """``--model auto``: the upstream pairing, the CIFAR stem for small images and the ImageNet stem for large."""
    return "resnet18" if image_size <= CIFAR_STEM_MAX_PX else "resnet18_imagenet"


def stem_mismatch(name: str, image_size: int) -> str | None:
    """One warning line where backbone ``name``'s stem does not fit ``image_size`` px images, else None."""
    stem = BACKBONE_STEMS.get(name)
    if stem == "cifar" and image_size > CIFAR_STEM_MAX_PX:
        return (f"warning: --model {name} (CIFAR stem, for 28/32 px) on {image_size} px images costs 16x "
                f"the compute and memory of the ImageNet stem; --model resnet18_imagenet (or auto) fits them")
    if stem == "imagenet" and image_size <= CIFAR_STEM_MAX_PX:
        return (f"warning: --model {name} (ImageNet stem, for 224 px) on {image_size} px images shrinks them 4x "
                f"before the first block; --model resnet18 (or auto) fits them")
    return None
