"""The single-stage detector: backbone → pyramid → fusion (optional) → head."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from .blocks import DropBlock2d
from .head import DenseHead, HeadOutput

__all__ = ["YoloDetector"]


class YoloDetector(nn.Module):
    """A YOLOv3-family detector.

    Contract of ``forward(images, return_fusion=False)`` with ``images`` of shape
    ``(B, 3, H, W)``, H and W multiples of 32 (square or not):

    - training mode: the head's outputs for the loss, one
      :class:`~yolo_asff.models.head.HeadOutput` per level (stride-ascending): ``raw``
      ``(B, S, H_l, W_l, 5 + C)`` logits, the ``anchors`` each slot decodes with, and the
      ``guide`` of a guided-anchor head;
    - eval mode: decoded predictions ``(B, N, 5 + C)``: ``x1, y1, x2, y2`` in input
      pixels, objectness, class probabilities.

    With ``return_fusion=True`` it returns ``(predictions, fusion_maps)`` where
    ``fusion_maps`` holds one ``(B, 3, H_l, W_l)`` ASFF weight map per level
    (stride-ascending; empty for models without ASFF fusion).
    """

    def __init__(self, backbone: nn.Module, pyramid: nn.Module, head: DenseHead, fusion: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = backbone
        self.pyramid = pyramid
        self.fusion = fusion
        self.head = head

    @property
    def strides(self) -> Tuple[int, ...]:
        return self.head.strides

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward(self, images: Tensor, return_fusion: bool = False) -> Union[List[HeadOutput], Tensor, tuple]:
        h, w = images.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"input height and width must be multiples of 32, got {h}×{w}")
        features = self.pyramid(self.backbone(images))
        fusion_maps: List[Tensor] = []
        if self.fusion is not None:
            features, fusion_maps = self.fusion(features, return_weights=True)
        raw = self.head(features)
        out = raw if self.training else self.head.decode(raw)
        return (out, fusion_maps) if return_fusion else out

    def set_dropblock(self, block_sizes: Sequence[int], keep_prob: float) -> None:
        """Set the DropBlock block size of each level (stride-ascending) and the keep probability.

        Used by the ASFF* schedule; a no-op for models without DropBlock layers.
        """
        blocks = [m for m in self.modules() if isinstance(m, DropBlock2d)]
        if blocks and len(block_sizes) != len(blocks):
            raise ValueError(f"expected {len(blocks)} block sizes, got {len(block_sizes)}")
        for block, size in zip(blocks, block_sizes):
            block.block_size = int(size)
            block.keep_prob = float(keep_prob)
