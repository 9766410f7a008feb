"""Precomputed proposals: run-length encoded masks in an append-only JSON-lines file, plus an index.

    DIR/proposals.jsonl   one line per image: {"image": <split path>, "h": H, "w": W, "rle": [[counts], ...]}
    DIR/index.json        the split it was made for, the generator spec, the image count, complete or not

Writing is resumable: a rerun keeps every complete line (a torn last line from a kill is cut off) and
computes only the missing images. Reading checks the store against the split before training starts.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from semiseg.errors import SemisegError


def rle_encode(mask: np.ndarray) -> List[int]:
    """Row-major run lengths, starting with a (possibly empty) run of False."""
    v = mask.reshape(-1).astype(np.int8)
    if v.size == 0:
        return []
    change = np.flatnonzero(np.diff(v)) + 1
    counts = np.diff(np.concatenate([[0], change, [v.size]])).tolist()
    return ([0] + counts) if v[0] else counts


def rle_decode(counts: Sequence[int], h: int, w: int) -> np.ndarray:
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    if flat.size != h * w:
        raise ValueError(f"run lengths sum to {flat.size}, expected {h * w}")
    return flat.reshape(h, w)


def _read_lines(path: Path) -> Dict[str, dict]:
    """Complete records by image; a torn final line (killed mid-write) is cut off the file."""
    records: Dict[str, dict] = {}
    if not path.is_file():
        return records
    good_bytes = 0
    with open(path, "rb") as f:
        for raw in f:
            try:
                rec = json.loads(raw)
                rec["image"], rec["h"], rec["w"], rec["rle"]  # noqa: B018  (all fields present)
            except (json.JSONDecodeError, KeyError, TypeError):
                break
            if not raw.endswith(b"\n"):
                break
            records[rec["image"]] = rec
            good_bytes += len(raw)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return records


class ProposalStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.lines = self.root / "proposals.jsonl"
        self.index_path = self.root / "index.json"
        self.records = _read_lines(self.lines)

    # ---------------------------------------------------------------- writing
    def check_generator(self, spec: dict) -> None:
        """A store is continued only by the generator options it was made with: another's masks would be
        mixed in under the new options' name."""
        made = json.loads(self.index_path.read_text()).get("generator") if self.index_path.is_file() else None
        if self.records and made is not None and made != spec:
            raise SemisegError(f"{self.root} holds proposals made with {made}; the config says {spec}: give another "
                               "--out, or remove that folder to make them anew")

    def write_index(self, split: str, total: int, spec: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        index = {"split": split, "images": total, "done": len(self.records), "complete": len(self.records) >= total,
                 "generator": spec}
        tmp = self.index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index, indent=1) + "\n")
        os.replace(tmp, self.index_path)

    def add(self, image: str, masks: np.ndarray, fh) -> None:
        h, w = masks.shape[1:] if masks.ndim == 3 else (0, 0)
        rec = {"image": image, "h": int(h), "w": int(w), "rle": [rle_encode(m) for m in masks]}
        fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
        self.records[image] = rec

    # ---------------------------------------------------------------- reading
    def verify(self, images: Sequence[str], split_name: str) -> None:
        """Fail at start, with counts, when the store does not cover the split."""
        if not self.lines.is_file():
            raise SemisegError(f"proposal store {self.root} has no proposals.jsonl; "
                               f"run `semiseg proposals CONFIG --out {self.root}`")
        missing = [im for im in images if im not in self.records]
        if missing:
            raise SemisegError(
                f"proposal store {self.root} covers {len(images) - len(missing)} of the {len(images)} images in "
                f"{split_name} ({len(missing)} missing, e.g. {missing[:3]}); resume `semiseg proposals` to finish it "
                "or point data.proposal_store at the store made for this split"
            )

    def get(self, image: str) -> np.ndarray:
        rec = self.records.get(image)
        if rec is None:
            raise SemisegError(f"proposal store {self.root} has no entry for {image}")
        h, w = rec["h"], rec["w"]
        if not rec["rle"]:
            return np.zeros((0, h, w), bool)
        return np.stack([rle_decode(c, h, w) for c in rec["rle"]])
