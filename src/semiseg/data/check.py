"""``semiseg data check``: find the traps users fall into before they cost a training run.

Reports a per-class pixel histogram and flags: masks saved as 0/255 (binary foreground silently
ignored, IoU 0), RGB masks, label values outside [0, classes) and the ignore index, image/mask size
mismatch, missing or unreadable files, and images listed as both labeled and unlabeled.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from semiseg.data.io import is_binary_255, opened
from semiseg.data.presets import Layout
from semiseg.data.splits import Sample


@dataclass
class CheckReport:
    class_names: List[str]
    pixels: np.ndarray  # (num_classes + 1,) counts; last entry = ignore
    images: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)
    sizes: Dict[str, List[int]] = field(default_factory=dict)  # long sides of each list's images
    sources: Dict[str, str] = field(default_factory=dict)  # list name -> where it came from

    @property
    def ok(self) -> bool:
        return not self.problems

    def size_notes(self) -> List[str]:
        """Each list's spread of image sizes, and a note where the unlabeled images are far larger than the
        labeled ones: the same relative rescale then gives their objects another scale, and decoding them
        costs loader time."""
        med = {k: int(np.median(v)) for k, v in self.sizes.items() if v}
        lines = ["image long side: " + ", ".join(f"{k} median {med[k]} (min {min(v)}, max {max(v)})"
                                                  for k, v in self.sizes.items() if v)] if med else []
        if "labeled" in med and "unlabeled" in med and med["unlabeled"] > 2 * med["labeled"]:
            lines.append(f"note: the unlabeled images are {med['unlabeled'] / med['labeled']:.1f}x larger than the "
                         f"labeled ones; set data.resize (e.g. {med['labeled']}) so objects keep one scale")
        return lines

    def format(self) -> str:
        lines = ["lists: " + ", ".join(f"{k} {v} samples" for k, v in self.images.items())]
        lines += [f"  {k} from {self.sources[k]}" for k in self.images if k in self.sources]
        total = max(int(self.pixels.sum()), 1)
        lines.append(f"{'class':<20}{'pixels':>12}{'share':>9}")
        for name, n in zip(self.class_names + ["(ignore)"], self.pixels.tolist()):
            lines.append(f"{name:<20}{n:>12}{100 * n / total:>8.2f}%")
        lines += self.size_notes()
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines += [f"  - {p}" for p in self.problems[:50]]
            if len(self.problems) > 50:
                lines.append(f"  ... and {len(self.problems) - 50} more")
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def _mask_problem(layout: Layout, mask_path: Path, img_size, num_classes: int, ignore: int,
                  hist: Optional[np.ndarray]) -> Optional[str]:
    with opened(mask_path) as im:  # upright, as training reads it
        if im.mode in ("RGB", "RGBA"):
            return f"{mask_path}: RGB mask ({im.mode}); masks must hold class ids in one channel (mode L or P)"
        if im.size != img_size:
            return f"{mask_path}: mask is {im.size[0]}x{im.size[1]} but its image is {img_size[0]}x{img_size[1]}"
        m = layout.map_mask(np.asarray(im), str(mask_path))  # what loading sees (Cityscapes labelIds -> trainIds)
    values = np.unique(m)
    if is_binary_255(values, num_classes):
        return (f"{mask_path}: binary mask saved as 0/255; 255 is the ignore label, so the foreground would be "
                "ignored (save it as 0/1)")
    bad = values[(values >= num_classes) & (values != ignore)]
    if hist is not None:
        counts = np.bincount(np.where(m == ignore, num_classes, np.minimum(m, num_classes)).ravel(),
                             minlength=num_classes + 1)
        hist += counts[: num_classes + 1]
    if len(bad):
        return f"{mask_path}: label values {bad.tolist()[:8]} outside [0, {num_classes}) and {ignore}"
    return None


def check_layout(layout: Layout, ignore_index: int = 255, max_samples: int = 0) -> CheckReport:
    n = len(layout.class_names)
    report = CheckReport(list(layout.class_names), np.zeros(n + 1, np.int64), sources=dict(layout.sources))
    lists = {k: getattr(layout, k) for k in ("labeled", "unlabeled", "val") if getattr(layout, k)}
    report.problems += layout.problems  # what pairing a folder's files found
    if not lists:
        report.problems.append(f"{layout.root}: no labeled, unlabeled or val list found")
    # a folder that is there but empty: every semi-supervised method would stop at start on it
    report.problems += [f"{layout.sources[k]}: holds no images" for k in ("labeled", "unlabeled", "val")
                        if getattr(layout, k) == [] and k in layout.sources]
    for kind, samples in lists.items():
        report.images[kind] = len(samples)
        seen = Counter(s.image for s in samples)
        report.problems += [f"{layout.sources.get(kind, kind)}: {img} listed {c} times"
                            for img, c in seen.items() if c > 1]
        for s in samples[: max_samples or None]:
            # the histogram is the labeled list's: what supervision sees (unlabeled masks are checked, not counted)
            hist = report.pixels if kind == "labeled" else None
            report.problems += _check_sample(layout, s, kind != "unlabeled", n, ignore_index, hist,
                                             report.sizes.setdefault(kind, []))
    if "labeled" in lists and "unlabeled" in lists:
        both = {s.image for s in lists["labeled"]} & {s.image for s in lists["unlabeled"]}
        if both:
            report.problems.append(f"{len(both)} image(s) are in both the labeled and the unlabeled list, "
                                   f"e.g. {sorted(both)[:3]}")
    return report


def _check_sample(layout: Layout, s: Sample, labeled: bool, n: int, ignore: int,
                  hist: Optional[np.ndarray], sizes: List[int]) -> List[str]:
    img_path = layout.root / s.image
    if not img_path.is_file():
        return [f"{img_path}: image file missing"]
    try:  # decode every pixel, as training will (verify() reads headers only and passes a torn JPEG); the
        with opened(img_path) as im:  # size is the upright one, EXIF orientation applied, as read_image's
            size = im.size
        sizes.append(max(size))
    except Exception as e:  # any decoder failure is a finding, not a crash
        return [f"{img_path}: unreadable image ({e.__class__.__name__}: {e})"]
    if s.mask is None:
        return [f"{img_path}: labeled sample without a mask"] if labeled else []
    mask_path = layout.root / s.mask
    if not mask_path.is_file():
        return [f"{mask_path}: mask file missing"]
    if mask_path.suffix.lower() in (".jpg", ".jpeg"):
        return [f"{mask_path}: a JPEG mask: its lossy compression changes class ids at edges; save masks as PNG"]
    try:
        problem = _mask_problem(layout, mask_path, size, n, ignore, hist)
    except Exception as e:
        return [f"{mask_path}: unreadable mask ({e.__class__.__name__}: {e})"]
    return [problem] if problem else []
