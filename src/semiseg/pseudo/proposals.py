"""Class-agnostic mask proposals: ``propose(image) -> (K, H, W) bool``.

- ``superpixel`` (default, offline): scikit-image Felzenszwalb and SLIC segments at several scales,
  small ones dropped, near-duplicates (IoU > 0.9) merged. Cheap stand-ins for SAM's masks: they follow
  colour edges, which is what the refiners need from a proposal.
- ``sam``: segment-anything's automatic mask generator with a user checkpoint (SemiRES: ViT-H, 32x32
  points, predicted IoU >= 0.88, stability >= 0.95, box NMS 0.7). Imported lazily; it needs torchvision.
- ``instances``: the oracle, the true instances of a benchmark that knows them (the scenes).
- ``store``: precomputed masks written by ``semiseg proposals`` (see ``store.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from semiseg.errors import SemisegError
from semiseg.registry import Registry

PROPOSALS: Registry = Registry("proposal generator")


def dedupe(masks: Sequence[np.ndarray], min_area: int, iou_thresh: float = 0.9) -> np.ndarray:
    """Drop masks under ``min_area`` pixels and any mask with IoU > ``iou_thresh`` to a larger one kept."""
    masks = sorted((m for m in masks if m.sum() >= min_area), key=lambda m: -int(m.sum()))
    if not masks:
        return np.zeros((0, 0, 0), bool)
    flat = np.stack([m.reshape(-1) for m in masks]).astype(np.float32)  # (N, HW)
    inter = flat @ flat.T
    area = flat.sum(1)
    iou = inter / np.maximum(area[:, None] + area[None] - inter, 1)
    keep: list = []
    for i in range(len(masks)):
        if not keep or (iou[i, keep] <= iou_thresh).all():
            keep.append(i)
    return np.stack([masks[i] for i in keep])


@PROPOSALS.register("superpixel")
class SuperpixelProposals:
    # defaults chosen on 120 scenes: ~64 masks per 64 px image, 86% of objects matched at IoU > 0.5
    def __init__(self, felzenszwalb_scales: Sequence[float] = (100, 300, 800), slic_segments: Sequence[int] = (6, 12),
                 sigma: float = 0.8, min_area: int = 20, dedup_iou: float = 0.9) -> None:
        self.scales, self.slic_segments = list(felzenszwalb_scales), list(slic_segments)
        self.sigma, self.min_area, self.dedup_iou = sigma, min_area, dedup_iou

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from skimage.segmentation import felzenszwalb, slic

        maps = [felzenszwalb(image, scale=s, sigma=self.sigma, min_size=self.min_area) for s in self.scales]
        maps += [slic(image, n_segments=n, compactness=10, start_label=0) for n in self.slic_segments]
        masks = [lab == v for lab in maps for v in np.unique(lab)]
        return dedupe(masks, self.min_area, self.dedup_iou)


@PROPOSALS.register("sam", choices={"model_type": ("vit_h", "vit_l", "vit_b")})
class SamProposals:
    """Adapter for ``segment_anything.SamAutomaticMaskGenerator`` (or anything with its ``generate``)."""

    def __init__(self, checkpoint: str = "", model_type: str = "vit_h", points_per_side: int = 32,
                 pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95, box_nms_thresh: float = 0.7,
                 min_area: int = 0, generator: Optional[Any] = None) -> None:
        self.min_area = min_area
        if generator is not None:
            self.generator = generator
            return
        try:
            from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
        except ImportError as e:
            raise SemisegError(
                f"proposals.name=sam needs the segment-anything package ({e}); install it with "
                "`pip install 'semiseg[sam]'` in an environment where torchvision works, "
                "or use proposals.name=superpixel"
            ) from None
        if not checkpoint or not Path(checkpoint).is_file():
            raise SemisegError(
                f"SAM checkpoint {checkpoint or '(not set)'} not found: download sam_vit_h_4b8939.pth (or the "
                f"{model_type} checkpoint) once and set proposals.checkpoint=/path/to/it; nothing is downloaded here"
            )
        sam = sam_model_registry[model_type](checkpoint=checkpoint)
        self.generator = SamAutomaticMaskGenerator(sam, points_per_side=points_per_side,
                                                   pred_iou_thresh=pred_iou_thresh,
                                                   stability_score_thresh=stability_score_thresh,
                                                   box_nms_thresh=box_nms_thresh)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        anns = self.generator.generate(image)
        masks = [np.asarray(a["segmentation"], bool) for a in sorted(anns, key=lambda a: -a["area"])
                 if a["area"] >= self.min_area]
        if not masks:
            return np.zeros((0,) + image.shape[:2], bool)
        return np.stack(masks)


@PROPOSALS.register("instances")
class InstanceProposals:
    """The oracle: each labeled instance of an image (an instance-id PNG of the same name in ``folder``, as
    the scenes write it; 0 = background) as one proposal, and the background as one more: the partition a
    perfect class-agnostic segmenter would give. It measures the most that refinement can give on a
    benchmark whose instances are known (docs/benchmarks.md); real unlabeled data has no such file."""

    reads_path = True  # called with the image's path, not its pixels

    def __init__(self, folder: str = "instances") -> None:
        self.folder = folder

    def __call__(self, image_path: Path) -> np.ndarray:
        from PIL import Image

        path = Path(image_path).parent.parent / self.folder / Path(image_path).name
        if not path.is_file():
            raise SemisegError(f"oracle proposals: {path} does not exist (the instances of {image_path})")
        with Image.open(path) as im:
            ids = np.asarray(im)
        return np.stack([ids == v for v in np.unique(ids)])


def build_proposals(spec: Dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    spec = dict(spec)
    name = spec.pop("name", "superpixel")
    try:
        return PROPOSALS.get(name)(**spec)
    except TypeError as e:
        raise SemisegError(f"proposal generator {name!r}: {e}") from None
