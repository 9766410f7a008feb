"""The field's split-file format: ``image [mask]`` per line, relative to data_root."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

from semiseg.errors import SemisegError


@dataclass(frozen=True)
class Sample:
    image: str  # absolute or root-relative path as written in the split file
    mask: Optional[str] = None


def read_split(path: str | Path, require_mask: bool) -> List[Sample]:
    """Read a split file; unlabeled lists may omit the mask column (UniMatch #33, #72)."""
    path = Path(path)
    if not path.is_file():
        raise SemisegError(f"split file {path} does not exist")
    samples = []
    # splitlines(), not wc -l: some published split files lack the final newline; utf-8-sig: a file saved
    # by a Windows editor starts with a byte-order mark, which would otherwise open the first path
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise SemisegError(f"split file {path} is not UTF-8 text (byte {e.start} is {e.object[e.start]:#04x}): save "
                           "it as UTF-8 (an editor's 'UTF-16' or 'Unicode' writes other bytes)") from None
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise SemisegError(f"split file {path}, line {n}: expected 'image [mask]', got {len(parts)} fields")
        if require_mask and len(parts) < 2:
            raise SemisegError(f"split file {path}, line {n}: a labeled list needs 'image mask', got only {parts[0]}")
        samples.append(Sample(parts[0], parts[1] if len(parts) > 1 else None))
    if not samples:
        raise SemisegError(f"split file {path} is empty")
    return samples


def write_split(path: str | Path, samples: Sequence[Sample]) -> None:
    """The field's format separates image and mask by whitespace and has no quoting: a name holding a space
    could not be read back, so it is refused before anything is written."""
    spaced = [p for s in samples for p in (s.image, s.mask) if p and any(c.isspace() for c in p)]
    if spaced:
        raise SemisegError(f"{len(spaced)} file name(s) contain whitespace, which split files cannot hold "
                           f"(fields are separated by spaces); rename them first, e.g. {spaced[:3]}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [s.image if s.mask is None else f"{s.image} {s.mask}" for s in samples]
    path.write_text("".join(line + "\n" for line in lines))


def draw_split(samples: Sequence[Sample], seed: int, count: int = 0, ratio: float = 0.0):
    """Seeded labeled/unlabeled draw by count or ratio; keeps the original order inside each list."""
    if bool(count) == bool(ratio):
        raise SemisegError("give exactly one of --count or --ratio")
    k = count or max(1, int(round(len(samples) * ratio)))
    if not 0 < k <= len(samples):
        raise SemisegError(f"cannot draw {k} labeled samples from {len(samples)}")
    import numpy as np  # local: keeps this module importable without numpy for split-file parsing

    chosen = set(np.random.default_rng(seed).permutation(len(samples))[:k].tolist())
    labeled = [s for i, s in enumerate(samples) if i in chosen]
    unlabeled = [s for i, s in enumerate(samples) if i not in chosen]
    return labeled, unlabeled
