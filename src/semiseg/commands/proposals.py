"""``semiseg proposals CONFIG --out DIR``: precompute mask proposals for the unlabeled split, resumably."""
from __future__ import annotations

HELP = "precompute mask proposals for the unlabeled split (resumable)"


def add_arguments(p, verb) -> None:
    p.add_argument("config", help="experiment YAML: its unlabeled split and its proposals section")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides, applied after the file")
    p.add_argument("--out", required=True, help="store folder (proposals.jsonl + index.json)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (for a quick look)")


def run(args) -> int:
    from semiseg.configure import load_config

    make_store(load_config(args.config, args.overrides), args.out, args.limit)
    return 0


def make_store(cfg, out, limit: int = 0) -> None:
    """The proposals of ``cfg``'s unlabeled split (its ``proposals`` section) into the store at ``out``, the
    images already there skipped; ``limit``: only the first N images. ``semiseg compare`` calls it too."""
    import time

    from semiseg.config import as_dict
    from semiseg.data.io import read_image
    from semiseg.data.presets import resolve_layout
    from semiseg.engine.logging import fmt_time
    from semiseg.errors import SemisegError
    from semiseg.pseudo.proposals import build_proposals
    from semiseg.pseudo.store import ProposalStore

    layout = resolve_layout(cfg.data)
    if layout.unlabeled is None:
        raise SemisegError(f"no unlabeled split under {layout.root}: nothing to make proposals for")
    samples = layout.unlabeled[: limit or None]
    split = layout.sources.get("unlabeled", "")
    generate = build_proposals(cfg.proposals)
    store = ProposalStore(out)
    todo = [s for s in samples if s.image not in store.records]
    spec = as_dict(cfg)["proposals"]
    store.check_generator(spec)
    store.write_index(split, len(samples), spec)
    print(f"{len(samples) - len(todo)} of {len(samples)} images already done; computing {len(todo)} with {spec}")
    t0 = time.time()
    with open(store.lines, "a") as fh:
        for i, s in enumerate(todo, 1):
            path = layout.root / s.image
            store.add(s.image, generate(path if getattr(generate, "reads_path", False) else read_image(path)), fh)
            if i % 100 == 0 or i == len(todo):
                fh.flush()
                store.write_index(split, len(samples), spec)
                rate = i / (time.time() - t0)
                print(f"[{i}/{len(todo)}] {rate:.1f} images/s, {fmt_time((len(todo) - i) / rate)} left", flush=True)
    store.write_index(split, len(samples), spec)
    if todo:
        print(f"wrote proposals for {len(todo)} images in {time.time() - t0:.1f}s "
              f"({len(todo) / (time.time() - t0):.1f} images/s) to {out}")
