"""``semiseg data scenes|blobs|referring|split|check``: arguments to the data functions and their printed summary."""
from __future__ import annotations

import time
from pathlib import Path

from semiseg.data.splits import read_split, write_split, draw_split
from semiseg.errors import SemisegError


def run(args) -> int:
    if args.data_verb == "scenes":
        from semiseg.data.scenes import ScenesConfig, generate

        cfg = ScenesConfig(seed=args.seed, canvas=args.canvas, n_train=args.n_train, n_val=args.n_val,
                           items_min=args.items_min, items_max=args.items_max, item_scale=list(args.item_scale),
                           tint=not args.no_tint, background=args.background, items=args.items,
                           classes=args.classes)
        t = time.time()
        counts = generate(args.out, cfg)
        print(f"wrote {counts['train']} train and {counts['val']} val scenes to {args.out} in {time.time() - t:.1f}s")
        return 0
    if args.data_verb == "blobs":
        from semiseg.data.blobs import generate_blobs

        generate_blobs(args.out, args.labeled, args.unlabeled, args.val, args.size, args.seed, args.lighting)
        print(f"wrote {args.labeled} labeled, {args.unlabeled} unlabeled and {args.val} validation images to {args.out}")
        return 0
    if args.data_verb == "referring":
        from semiseg.tasks.referring.referring import generate_referring

        counts = generate_referring(args.root, args.seed)
        print(f"wrote {counts['refs']} referring expressions over {counts['train_images']} training images to "
              f"{args.root}/referring")
        return 0
    if args.data_verb == "split":
        return _split(args)
    return _check(args)


def _split(args) -> int:
    root = Path(args.root)
    if args.refs:
        return _split_refs(args, root)
    if args.list:
        samples = read_split(Path(args.list) if Path(args.list).is_file() else root / args.list, require_mask=False)
    else:
        from semiseg.data.presets import folder_samples

        images = root / args.images
        if not images.is_dir():
            raise SemisegError(f"image folder {images} does not exist")
        samples = folder_samples(images, root / args.masks if args.masks else None, root)
        if not samples:
            raise SemisegError(f"image folder {images} holds no images")
    labeled, unlabeled = draw_split(samples, args.seed, args.count, args.ratio)
    out = Path(args.out)
    write_split(out / "labeled.txt", labeled)
    write_split(out / "unlabeled.txt", unlabeled)
    print(f"{len(labeled)} labeled, {len(unlabeled)} unlabeled -> {out}/labeled.txt, unlabeled.txt")
    return 0


def _split_refs(args, root: Path) -> int:
    from semiseg.tasks.referring.sources import draw_ref_split

    refs = Path(args.refs) if Path(args.refs).is_absolute() else root / args.refs
    labeled, unlabeled, images = draw_ref_split(refs, args.seed, args.count, args.ratio)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labeled.txt").write_text("".join(f"{i}\n" for i in labeled))
    (out / "unlabeled.txt").write_text("".join(f"{i}\n" for i in unlabeled))
    print(f"{images} labeled images: {len(labeled)} labeled refs, {len(unlabeled)} unlabeled -> {out}/labeled.txt, "
          "unlabeled.txt (ref ids)")
    return 0


def _check(args) -> int:
    from semiseg.configure import load_config
    from semiseg.data.check import check_layout
    from semiseg.data.presets import resolve_layout

    config, overrides = args.config, list(args.overrides)
    if config and "=" in config and not Path(config).is_file():  # no config file: the first word is an override
        config, overrides = None, [config] + overrides
    cfg = load_config(config, overrides)
    layout = resolve_layout(cfg.data, lenient=True)
    report = check_layout(layout, cfg.data.ignore_index, args.max_samples)
    split_dir = layout.root / "splits" / cfg.data.split
    if cfg.data.dataset != "folder" and not cfg.data.labeled and not split_dir.is_dir():
        found = sorted(p.name for p in (layout.root / "splits").iterdir() if p.is_dir()) \
            if (layout.root / "splits").is_dir() else []
        report.problems.insert(0, f"data.split={cfg.data.split}: no folder {split_dir}; the splits there: "
                                  f"{', '.join(found) or 'none'}")
    print(report.format())
    return 0 if report.ok else 1
