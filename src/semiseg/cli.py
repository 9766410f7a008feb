"""One entry point: ``semiseg <verb> ...`` (also ``python -m semiseg`` and ``torchrun -m semiseg``)."""
from __future__ import annotations

import argparse
import errno
import importlib
import os
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


# each verb is commands/<verb>.py
VERBS = ("train", "eval", "predict", "export", "report", "data", "proposals", "bench", "recipes", "compare")


def build_parser() -> argparse.ArgumentParser:
    """Each verb's arguments come from its module in commands/ (``HELP``, ``add_arguments``); those modules
    import what they run inside ``run``, so building the parser stays fast."""
    parser = argparse.ArgumentParser(prog="semiseg", description=__doc__, epilog=EXAMPLES, formatter_class=_Help)
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name in VERBS:
        command = importlib.import_module(f"semiseg.commands.{name}")
        command.add_arguments(_verb(verbs, name, command.HELP), _verb)
    return parser


def _is_override(word: str) -> bool:
    return "=" in word and not Path(word).exists()


def parse(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Overrides ``a.b=c`` are accepted anywhere on the line, before or after options (argparse stops
    collecting positionals at the first option); ``--resume a.b=c`` is ``--resume`` then an override."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    unknown = [a for a in extra if "=" not in a or a.startswith("-")]
    if unknown or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    config = getattr(args, "config", None)
    if isinstance(config, list):  # several configs (bench speed): the a.b=c words among them are overrides
        extra = [c for c in config if _is_override(c)] + extra
        args.config = [c for c in config if not _is_override(c)]
    elif config and _is_override(config):  # no config file: the first word is an override
        extra, args.config = [config, *extra], None
    resume = getattr(args, "resume", None)
    if resume and resume != "auto" and _is_override(resume):
        extra, args.resume = [resume, *extra], "auto"
    if extra:
        args.overrides = [*(args.overrides or []), *extra]
    return args


def run(argv: Optional[List[str]] = None) -> int:
    args = parse(argv)
    return importlib.import_module(f"semiseg.commands.{args.verb}").run(args)


def main(argv: Optional[List[str]] = None) -> None:
    try:
        code = run(argv)
    except SemisegError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # `semiseg ... | head`: the reader had what it wanted and left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        code = 0
    except OSError as e:  # a full disk, a quota, a read-only folder where no writer said more: one line too
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        print(f"error: cannot write {e.filename or 'a file'}: {e.strerror}", file=sys.stderr)
        code = 2
    sys.exit(code)


if __name__ == "__main__":
    main()
