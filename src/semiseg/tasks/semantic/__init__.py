"""Semantic segmentation: a data preset, a segmentation model, mIoU per class."""
