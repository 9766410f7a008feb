"""Every configuration value is checked when the config loads: a wrong-typed value at every leaf of the
schema (methods, selectors, refiners and proposal generators included) and an invalid choice at every
enumerated key give one line naming the key, where it was set, and what is valid; for train (a file plus
overrides), eval (a checkpoint's config plus overrides) and bench (a suite's runs, before any trains)."""
import dataclasses
import re

import pytest

from semiseg.bench.quality import run_suite
from semiseg.config import Config
from semiseg.configure import load_config
from semiseg.errors import SemisegError
from semiseg.methods import METHODS
from semiseg.pseudo.proposals import PROPOSALS, build_proposals
from semiseg.pseudo.refiners import REFINERS
from semiseg.pseudo.selectors import SELECTORS


def wrong(default):
    """A value of the wrong type for a field with this default."""
    return "[1, 2]" if isinstance(default, str) else "not_a_value"


def schema_leaves(schema, prefix=""):
    for f in dataclasses.fields(schema):
        value = getattr(schema, f.name)
        if dataclasses.is_dataclass(value):
            yield from schema_leaves(value, f"{prefix}{f.name}.")
        elif not isinstance(value, dict) and f.name != "name":
            yield f"{prefix}{f.name}", value, f.metadata.get("choices")


def cases():
    """(base overrides, key, bad value, expected words): every leaf, every method's, every component's."""
    out = [((), k, wrong(v), ()) for k, v, _ in schema_leaves(Config()) if k not in ("method", "proposals")]
    out += [((), k, "no_such_choice" if isinstance(c[0], str) else "7", ("valid:",))
            for k, _, c in schema_leaves(Config()) if c]
    out += [((), "data.dataset", "no_such_preset", ("valid:", "voc")),
            ((), "model.backbone", "resnet19", ("resnet18",))]
    for name in METHODS.names():
        base = (f"method.name={name}",) + (() if "semantic" in METHODS.get(name).tasks else ("task=res",))
        for k, v, c in schema_leaves(METHODS.get(name).Config(), "method."):
            out.append((base, k, wrong(v), ()))
            if c:
                out.append((base, k, "no_such_choice", ("valid:",)))
    for registry, key, base in [(SELECTORS, "method.selector", ("method.name=unimatch",)),
                                (REFINERS, "method.refiner", ("method.name=unimatch",)),
                                (PROPOSALS, "proposals", ())]:
        for comp in registry.names():
            spec = (*base, f"{key}={{name: {comp}}}")
            out.append(((*base,), f"{key}.name", "no_such_component", ("valid:",)))
            out.append((spec, f"{key}.bogus_option", "1", ("unknown option",)))
            for opt, default in registry.options(comp).items():
                if default is not None:
                    out.append((spec, f"{key}.{opt}", wrong(default), ()))
                for choice in registry.choices(comp).get(opt, ()):
                    out.append((spec, f"{key}.{opt}", "no_such_choice", ("valid:", choice)))
    return out


CASES = cases()


def check(message, key, words, where):
    assert "\n" not in message and f"'{key}'" in message and where in message, message
    assert all(w in message for w in words), message


@pytest.mark.parametrize("base,key,value,words", CASES, ids=[f"{c[1]}={c[2]}" for c in CASES])
def test_a_bad_value_is_one_line_naming_the_key_for_train_eval_and_bench(base, key, value, words, tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("train:\n  iters: 10\n")
    with pytest.raises(SemisegError) as e:  # train: the file, then the overrides
        load_config(cfg_file, [*base, f"{key}={value}"])
    check(str(e.value), key, words, "command line override")
    embedded = dataclasses.asdict(Config())  # eval: a checkpoint's config, then the overrides
    with pytest.raises(SemisegError) as e:
        load_config(None, [*base, f"{key}={value}"], extra=embedded)
    check(str(e.value), key, words, "command line override")
    suite = {"name": "s", "runs": [{"name": "ok", "config": str(cfg_file)},  # bench: before any run trains
                                   {"name": "bad", "config": str(cfg_file), "overrides": [*base, f"{key}={value}"]}]}
    with pytest.raises(SemisegError) as e:
        run_suite(suite, tmp_path / "out")
    check(str(e.value), key, words, "run bad")
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method:\n  name: unimatch\n  selector: {name: threshold, tau: high}\n")
    with pytest.raises(SemisegError, match=f"{path}: bad value for 'method.selector.tau': 'high'"):
        load_config(path)


def test_valid_values_still_load():
    cfg = load_config(None, ["method.name=dssn", "method.teacher_mode=eval", "train.amp=none", "eval.mode=slide",
                             "method.selector={name: csl, features: log, alpha: 4}", "model.backbone=resnet50"])
    assert cfg.method["selector"] == {"name": "csl", "features": "log", "alpha": 4}


def test_a_component_option_given_as_a_list_loads_from_a_file_and_the_command_line(tmp_path):
    # the superpixel scales are a tuple by default; a YAML or command-line list is the same option, and the
    # generator gets plain numbers
    cli = "proposals={name: superpixel, felzenszwalb_scales: [50, 100], slic_segments: [4]}"
    path = tmp_path / "p.yaml"
    path.write_text("proposals: {name: superpixel, felzenszwalb_scales: [50, 100], slic_segments: [4]}\n")
    for cfg in (load_config(None, [cli]), load_config(path)):
        gen = build_proposals(dict(cfg.proposals))
        assert gen.scales == [50, 100] and gen.slic_segments == [4]


@pytest.mark.parametrize("override,message", [
    ("method.teacher_scales=[]", "bad value for 'method.teacher_scales': []; valid: a list of at least 1 number"),
    ("method.teacher_scales=[1.0,[1.5]]", "bad value for 'method.teacher_scales[1]': Value '[1.5]'"),
    ("data.scale_range=[0.5,[2]]", "bad value for 'data.scale_range': [0.5, [2]]; valid: a pair [low, high]"),
])
def test_an_empty_or_nested_list_is_one_line_naming_the_key(override, message):
    # before: a division by zero at the first step, and two tracebacks at load
    with pytest.raises(SemisegError, match=re.escape(f"command line override: {message}")):
        load_config(None, ["method.name=dssn", override])
