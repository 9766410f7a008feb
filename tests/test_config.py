import pytest

from semiseg.config import parse_overrides
from semiseg.configure import load_config
from semiseg.errors import SemisegError


def write(tmp_path, text):
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_defaults_file_and_overrides_merge_in_order(tmp_path):
    p = write(tmp_path, "data:\n  crop_size: 96\ntrain:\n  lr: 0.01\n")
    cfg = load_config(p, ["train.lr=0.02", "model.dilations=[12,24,36]"])
    assert cfg.data.crop_size == 96  # from the file
    assert cfg.train.lr == 0.02  # override wins over the file
    assert list(cfg.model.dilations) == [12, 24, 36]  # lists parse
    assert cfg.train.iters == 2000  # untouched default
    assert cfg.method.name == "supervised"


def test_split_names_with_underscores_stay_strings(tmp_path):
    # plain YAML 1.1 reads 1_16 as the integer 116; the field's split folders are named 1_16
    assert load_config(write(tmp_path, "data:\n  split: 1_16\n")).data.split == "1_16"
    assert load_config(None, ["data.split=1_8"]).data.split == "1_8"
    assert parse_overrides(["train.lr=1e-3"]) == {"train": {"lr": 0.001}}


def test_unknown_key_names_the_file_and_the_valid_keys(tmp_path):
    p = write(tmp_path, "data:\n  crop_sise: 96\n")
    with pytest.raises(SemisegError) as e:
        load_config(p)
    msg = str(e.value)
    assert str(p) in msg and "data.crop_sise" in msg and "crop_size" in msg


def test_unknown_override_and_method_key():
    with pytest.raises(SemisegError, match="train.itres"):
        load_config(None, ["train.itres=5"])
    with pytest.raises(SemisegError, match="method.bogus"):
        load_config(None, ["method.bogus=1"])
    with pytest.raises(SemisegError, match="command line override: bad value for 'method.name': 'nope'.*supervised"):
        load_config(None, ["method.name=nope"])


def test_wrong_type_is_a_clear_error(tmp_path):
    with pytest.raises(SemisegError) as e:
        load_config(write(tmp_path, "train:\n  iters: many\n"))
    assert "train.iters" in str(e.value) and "exp.yaml" in str(e.value)


def test_bad_override_syntax():
    with pytest.raises(SemisegError, match="key=value"):
        load_config(None, ["train.iters"])


def test_base_files_are_overlaid(tmp_path):
    (tmp_path / "base.yaml").write_text("data:\n  crop_size: 96\n  split: 1_8\ntrain:\n  iters: 10\n")
    p = write(tmp_path, "_base_: base.yaml\ndata:\n  split: 1_16\nmethod:\n  name: fixmatch\n")
    cfg = load_config(p)
    assert (cfg.data.crop_size, cfg.data.split, cfg.train.iters, cfg.method.name) == (96, "1_16", 10, "fixmatch")
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(SemisegError, match="includes itself"):
        load_config(tmp_path / "loop.yaml")


def test_switching_a_component_by_name_drops_its_old_options(tmp_path):
    p = write(tmp_path, "method:\n  name: csl\n  selector: {name: csl, alpha: 2.0}\n")
    cfg = load_config(p, ["method.selector={name: class_aware, ratio: 0.9}"])
    assert cfg.method.selector == {"name": "class_aware", "ratio": 0.9}
    assert load_config(p, ["method.selector.alpha=4.0"]).method.selector == {"name": "csl", "alpha": 4.0,
                                                                             "features": "raw"}
    # the method's own default spec is replaced too, not merged
    cfg = load_config(None, ["method.name=csl", "method.selector={name: threshold}"])
    assert cfg.method.selector == {"name": "threshold"}


def test_method_values_are_type_checked():
    with pytest.raises(SemisegError, match="command line override: bad value for 'method.warmup_steps'"):
        load_config(None, ["method.name=dssn", "method.warmup_steps=soon"])


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SHIPPED = sorted(str(p) for p in (REPO / "configs").rglob("*.yaml"))  # wherever pytest runs from
assert len(SHIPPED) > 20


@pytest.mark.parametrize("path", SHIPPED)
def test_every_shipped_config_and_suite_loads(path):
    """A typo in a shipped reference config fails here, not hours into someone's run."""
    from semiseg.bench.quality import read_suite

    if "/suites/" in path:
        suite = read_suite(path)
        for r in suite["runs"]:  # suite overrides and the run's own, as the suite applies them
            load_config(REPO / r["config"], list(suite.get("overrides", [])) + list(r.get("overrides", [])))
    else:
        load_config(path, [])


def test_changed_settings_compare_a_components_options_whole_and_ignore_what_does_not_change_learning():
    from semiseg.config import changed_settings, describe_changes

    was = {"work_dir": "a", "recipe": "", "data": {"num_workers": 2, "proposal_store": ""},
           "method": {"name": "dssn", "refiner": {}, "selector": {"name": "class_aware"}},
           "proposals": {"name": "superpixel"}, "train": {"iters": 2, "log_interval": 50}}
    now = {"work_dir": "b", "recipe": "dssn-iom", "data": {"num_workers": 0, "proposal_store": "p"},
           "method": {"name": "dssn", "refiner": {"name": "iom"}, "selector": {"name": "class_aware", "per": "batch"},
                      "paste_p": 0.0},  # an option added since: the older run has no value to compare
           "proposals": {"name": "superpixel", "min_area": 5}, "train": {"iters": 2, "log_interval": 1}}
    assert describe_changes(changed_settings(was, now)) == [
        "data.proposal_store: '', now 'p'", "method.refiner: {}, now {'name': 'iom'}",
        "method.selector: {'name': 'class_aware'}, now {'name': 'class_aware', 'per': 'batch'}",
        "proposals: {'name': 'superpixel'}, now {'name': 'superpixel', 'min_area': 5}"]
    assert changed_settings(now, now) == {}


def test_changed_settings_take_a_path_written_two_ways_as_the_same():
    from semiseg.config import changed_settings

    was = {"data": {"root": "data/scenes/", "proposal_store": "./data/scenes/proposals", "labeled": ""}}
    same = {"data": {"root": "data/scenes", "proposal_store": "data/scenes/proposals", "labeled": ""}}
    assert changed_settings(was, same) == {}
    other = {"data": {"root": "data/scenes-fine", "proposal_store": "data/scenes/proposals", "labeled": "."}}
    assert list(changed_settings(was, other)) == ["data.labeled", "data.root"]  # unset and "." are not one path
