"""``semiseg bench quality|speed|pseudo|selector``: each benchmark's own glue formats and writes its table
(bench/<name>.py, ``*_from_cli``); this module only picks it."""
from __future__ import annotations


def run(args) -> int:
    if args.bench_verb == "pseudo":
        from semiseg.bench.pseudo import pseudo_from_cli as verb
    elif args.bench_verb == "selector":
        from semiseg.bench.selector import selector_from_cli as verb
    elif args.bench_verb == "quality":
        from semiseg.bench.quality import quality_from_cli as verb
    else:
        from semiseg.bench.speed import speed_from_cli as verb
    return verb(args)
