"""The authors' UniMatch V2 step (the speed reference) is semiseg's unimatch_v2 step computed their way: at
the same settings and seeds both give the same losses, step after step."""
import pytest

pytest.importorskip("dinov2")

from semiseg.bench.vs_reference import AUTHORS, reference_table, run_side  # noqa: E402
from semiseg.cli import run  # noqa: E402
from semiseg.errors import SemisegError  # noqa: E402

from conftest import TINY  # noqa: E402


def tiny_v2(root):
    return [*TINY, f"data.root={root}", "model.arch=dpt", "model.backbone=dinov2_tiny", "method.name=unimatch_v2",
            "data.crop_size=28", "train.optimizer=adamw", "train.lr=0.0001", "train.lr_multi=4"]


def test_the_reference_step_gives_semisegs_losses_at_the_reference_settings(tiny_scenes):
    ours = run_side(None, tiny_v2(tiny_scenes) + AUTHORS, False, steps=3, warmup=1)
    theirs = run_side(None, tiny_v2(tiny_scenes) + AUTHORS, True, steps=3, warmup=1)
    assert len(ours["losses"]) == 4 and len(set(ours["losses"])) == 4  # the weights move: each step its own loss
    assert ours["losses"] == pytest.approx(theirs["losses"], rel=1e-5)


def side(name, step_s, losses):
    return {"side": name, "step_s": step_s, "peak_mib": 100.0, "losses": losses, "device": "cpu"}


def test_the_table_says_how_fast_and_whether_the_losses_agree():
    ref = side("reference", 2.0, [1.0, 0.8])
    results = [side("semiseg", 1.25, [1.0, 0.82]), side("same", 2.0, [1.0, 0.8]), side("yard", 1.3, [1.0, 0.81]), ref]
    text = reference_table(results)
    assert "| semiseg | 1.250 | 1.60x | 100 | 0.8200 | 2.50% |" in text
    assert "default step is 1.60x the reference's speed; its losses agree with the reference's (at most 2.50% apart, " \
           "against 1.25% between" in text
    results[0] = side("semiseg", 1.25, [1.0, 0.9])  # 12.5% apart where rounding moves them 1.25%: no agreement
    assert "its losses do NOT agree" in reference_table(results)


def test_vs_reference_refuses_another_method(tiny_scenes):
    with pytest.raises(SemisegError, match="--vs-reference times UniMatch V2's step: .* trains method.name=fixmatch"):
        run_side(None, [*tiny_v2(tiny_scenes), "method.name=fixmatch"], True, steps=1, warmup=0)


@pytest.mark.slow
def test_bench_speed_vs_reference_end_to_end(tiny_scenes, tmp_path, capsys):
    cfg = tmp_path / "v2.yaml"
    cfg.write_text("method:\n  name: unimatch_v2\n")
    doc = tmp_path / "bench.md"
    assert run(["bench", "speed", str(cfg), *tiny_v2(tiny_scenes), "--vs-reference", "--steps", "2", "--warmup", "1",
                "--doc", str(doc), "--section", "ref"]) == 0
    out = capsys.readouterr().out
    assert "| reference (the authors' step) |" in out and "gives the reference's losses to 0.000%" in out
    assert "<!-- semiseg:ref -->" in doc.read_text()


def test_speed_options_each_get_a_row_or_say_where_they_act(tiny_scenes, monkeypatch):
    from semiseg.bench import options

    seen = []
    monkeypatch.setattr(options, "_measure_in_child", lambda config, ov, steps, warmup: seen.append(ov) or {
        "step_s": 0.5 if "train.amp=bf16" in ov else 1.0, "train_images_per_s": 16.0, "peak_memory_mib": 300.0})

    monkeypatch.setattr("semiseg.bench.speed.in_fresh_process", lambda fn, *args: fn(*args))  # here, not a child
    cnn = options.measure_options(None, [*TINY, f"data.root={tiny_scenes}"], 2, 1, cuda=False)
    text = options.options_table(cnn)
    assert "| bf16 autocast (train.amp=bf16) | 0.500 | 0.50x | 16.0 | 300 |" in text
    cuda_only = "| timed on CUDA only (no CUDA device here) |"
    assert f"| no cuDNN autotuning or TF32 (train.deterministic=true) {cuda_only}" in text
    assert f"| fp16 autocast + gradient scaler (train.amp=fp16) {cuda_only}" in text
    assert "| activation checkpointing (model.grad_checkpoint=true) | acts on a dinov2_* encoder only |" in text
    assert len(seen) == 5 and ["train.compile=true"] == seen[-1][-1:]
    seen.clear()
    options.measure_options(None, tiny_v2(tiny_scenes), 2, 1, cuda=True)  # a ViT on CUDA: every option measured
    assert len(seen) == len(options.OPTIONS)


def test_a_fresh_process_gives_back_its_result_or_its_error():
    from semiseg.bench.speed import in_fresh_process
    from semiseg.configure import load_config

    assert in_fresh_process(load_config, None, ["train.iters=7"]).train.iters == 7
    with pytest.raises(SemisegError, match="nope.yaml"):
        in_fresh_process(load_config, "nope.yaml", [])


def test_a_one_config_study_refuses_two_configs():
    for flag in ("--options", "--vs-reference"):
        with pytest.raises(SemisegError, match=f"{flag} studies one config; got 2: a.yaml b.yaml"):
            run(["bench", "speed", "a.yaml", "b.yaml", flag])


def test_bench_speed_refuses_no_timed_steps_and_two_studies_at_once():
    with pytest.raises(SemisegError, match="--steps 0 --warmup 0: at least 1 timed step"):
        run(["bench", "speed", "a.yaml", "--steps", "0", "--warmup", "0", "--options"])
    with pytest.raises(SemisegError, match="--options and --vs-reference are two studies"):
        run(["bench", "speed", "a.yaml", "--options", "--vs-reference"])
    with pytest.raises(SemisegError, match="--jobs 0 --nproc-per-node 1: each at least 1"):
        run(["bench", "quality", "a.yaml", "--jobs", "0"])
