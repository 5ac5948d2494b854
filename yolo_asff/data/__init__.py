"""Datasets (COCO, VOC, built-in), augmentation, mixup, multi-scale batches, loaders."""
from .build import build_dataloader, build_dataset
from .coco import load_coco
from .dataset import DetectionDataset, collate
from .records import DatasetError, ImageRecord
from .sampler import MultiScaleBatchSampler, SampleRequest
from .voc import VOC_CLASSES, load_voc

__all__ = [
    "DatasetError", "DetectionDataset", "ImageRecord", "MultiScaleBatchSampler", "SampleRequest", "VOC_CLASSES",
    "build_dataloader", "build_dataset", "collate", "load_coco", "load_voc",
]
