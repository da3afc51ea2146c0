"""Encoders for CSI/DIA: ResNet-18 backbones and the CSI heads."""
from models.csi_net import CSINet, EncoderOutput, build_model
from models.resnet import BACKBONES

__all__ = ["BACKBONES", "CSINet", "EncoderOutput", "build_model"]
