"""Encoders for CSI/DIA: ResNet-18 backbones and the CSI heads."""
from models.csi_net import CSINet, EncoderOutput, build_model
from models.resnet import BACKBONES, backbone_for, stem_mismatch

__all__ = ["BACKBONES", "CSINet", "EncoderOutput", "backbone_for", "build_model", "stem_mismatch"]
