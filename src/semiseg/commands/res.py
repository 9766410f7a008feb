"""``semiseg res train [CONFIG] [key=value ...]``: a referring segmenter (res/train.py)."""
from __future__ import annotations

import json

from semiseg.res.train import ResTrainer, load_res_config


def run(args) -> int:
    if args.config and "=" in args.config:  # no config file: the first word is an override
        args.config, args.overrides = None, [args.config] + args.overrides
    final = ResTrainer(load_res_config(args.config, args.overrides)).run()
    print(json.dumps(final))
    return 0
