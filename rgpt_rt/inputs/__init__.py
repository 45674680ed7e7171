"""Runtime inputs: frames, regions (masks, boxes, polygons, COCO RLE), depth maps and their preprocessing."""

from .depth import depth_image, disparity_from_metric
from .frames import load_frame
from .preprocess import preprocess_frame, preprocess_masks
from .regions import Box, Polygon, to_masks
from .rle import rle_decode, rle_encode

__all__ = [
    "Box",
    "Polygon",
    "depth_image",
    "disparity_from_metric",
    "load_frame",
    "preprocess_frame",
    "preprocess_masks",
    "rle_decode",
    "rle_encode",
    "to_masks",
]
