"""Datasets (COCO, VOC, YOLO txt, built-in), augmentation, mixup, multi-scale batches, loaders."""
from .build import build_dataloader, build_dataset, load_split
from .coco import load_coco
from .dataset import DetectionDataset, collate
from .records import Annotations, DatasetError, ImageRecord
from .sampler import MultiScaleBatchSampler, SampleRequest
from .voc import VOC_CLASSES, load_voc
from .yolo import load_yolo

__all__ = [
    "Annotations", "DatasetError", "DetectionDataset", "ImageRecord", "MultiScaleBatchSampler", "SampleRequest",
    "VOC_CLASSES", "build_dataloader", "build_dataset", "collate", "load_coco", "load_split", "load_voc", "load_yolo",
]
