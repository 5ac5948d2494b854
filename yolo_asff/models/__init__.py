"""Model zoo: Darknet-53, YOLOv3 / ASFF pyramids, ASFF fusion, YOLOv3 heads."""
from .asff import AsffFusion, AsffLevel, LevelExpand
from .build import ARCHITECTURES, build_model, default_anchors
from .darknet import Darknet53, TinyDarknet
from .detector import YoloDetector
from .head import DenseHead, HeadOutput, YoloHead, decode_level
from .pyramid import AsffPyramid, TinyPyramid, YoloV3Pyramid

__all__ = [
    "ARCHITECTURES",
    "AsffFusion",
    "AsffLevel",
    "AsffPyramid",
    "Darknet53",
    "DenseHead",
    "HeadOutput",
    "LevelExpand",
    "TinyDarknet",
    "TinyPyramid",
    "YoloDetector",
    "YoloHead",
    "YoloV3Pyramid",
    "build_model",
    "decode_level",
    "default_anchors",
]
