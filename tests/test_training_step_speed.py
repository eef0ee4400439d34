"""training.step_speed: the training-step benchmark builds every step setting, times them side by side and writes
its JSON and markdown (no timing is asserted: speed is measured by experiments/benchmark_train.py)."""

import json
import os
import subprocess
import sys

import pytest

from contextnet_tf.training import step_speed


@pytest.mark.slow
def test_run_writes_one_row_per_setting_with_the_first_as_baseline(tmp_path):
    settings = ("before", "default", "aux_eighth")
    result = step_speed.run(["fast_scnn"], str(tmp_path), crop=(32, 64), batch_size=1, steps=1, warmup=1, rounds=2,
                            settings=settings, command="python experiments/benchmark_train.py --test")
    rows = result["results"]
    assert [r["setting"] for r in rows] == list(settings)
    assert [r["fused_batch_norm"] for r in rows] == [False, True, True]
    assert [r["aux_resolution"] for r in rows] == ["input", "input", "eighth"]
    assert rows[0]["speedup"] == 1.0 and all(len(r["images_per_s"]) == 2 for r in rows)
    assert len(rows[0]["aux_heads"]) == 2  # Fast-SCNN trains with two auxiliary heads
    with open(tmp_path / "benchmark_train.json") as f:
        assert json.load(f)["settings"] == list(settings)
    table = (tmp_path / "benchmark_train.md").read_text()
    assert table.count("| fast_scnn |") == 3 and "--test" in table


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="unknown step setting.*'fused'"):
        step_speed.measure("cn14", (32, 64), 1, settings=("default", "fused"))


@pytest.mark.slow
def test_profile_sums_the_ops_of_a_step_by_category():
    fused = step_speed.profile("cn14", (32, 64), 1, steps=2, warmup=1, setting="default")
    keras_bn = step_speed.profile("cn14", (32, 64), 1, steps=2, warmup=1, setting="fast_loss")
    for p in (fused, keras_bn):
        categories = {(r["category"], r["part"]) for r in p["rows"]}
        for expected in (("batch norm", "forward"), ("batch norm", "gradient"), ("convolution", "gradient"),
                         ("upsampling (resize)", "forward"), ("losses and L2", "forward")):
            assert expected in categories
        assert abs(sum(r["share"] for r in p["rows"]) - 1.0) < 0.01
        assert p["op_ms"] == pytest.approx(sum(r["ms"] for r in p["rows"]), abs=0.1 * len(p["rows"]))
    bn_ops = {p["setting"]: next(r["ops_per_step"] for r in p["rows"] if r["category"] == "batch norm"
                                 and r["part"] == "forward") for p in (fused, keras_bn)}
    # The fused kernel replaces Keras' composition of element-wise ops (the moving-average updates remain).
    assert bn_ops["default"] < bn_ops["fast_loss"]
    def kinds(p):  # without oneDNN's prefix (the tests run with oneDNN on: conftest)
        return {t["op_type"].removeprefix("_MklNative").removeprefix("_Mkl") for t in p["op_types"]}

    assert {"FusedBatchNormV3", "FusedBatchNormGradV3"} <= kinds(fused)
    assert not any(k.startswith("FusedBatchNorm") for k in kinds(keras_bn))
    assert "| cn14 | default | batch norm | forward |" in step_speed.profile_markdown([fused])
    # oneDNN's kernels (_MklNativeConv2D...) and TensorFlow's own land in the same categories.
    script = ("import json; from contextnet_tf.training import step_speed; "
              "p = step_speed.profile('cn14', (32, 64), 1, steps=1, warmup=1); "
              "print(json.dumps([r['category'] for r in p['rows']] + [t['op_type'] for t in p['op_types']]))")
    for onednn in ("0", "1"):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                             env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn})
        assert out.returncode == 0, out.stderr[-2000:]
        names = json.loads(out.stdout.strip().splitlines()[-1])
        assert any(n.startswith("_MklNativeConv2D" if onednn == "1" else "Conv2D") for n in names)
        assert "convolution" in names and "batch norm" in names
    with pytest.raises(ValueError, match="unknown step setting 'fused' to profile"):
        step_speed.profile("cn14", (32, 64), 1, setting="fused")


@pytest.mark.slow
def test_environments_run_in_their_own_worker_processes(tmp_path):
    result = step_speed.run(["cn14"], str(tmp_path), crop=(32, 64), batch_size=1, steps=1, warmup=1, rounds=2,
                            settings=("before", "default"), environments=("onednn_off", "onednn_on"))
    rows = result["results"]
    assert [(r["environment"], r["setting"]) for r in rows] == [
        ("onednn_off", "before"), ("onednn_off", "default"), ("onednn_on", "before"), ("onednn_on", "default")]
    # Each worker's TensorFlow reports the oneDNN state its environment asked for.
    assert [r["onednn"] for r in rows] == [False, False, True, True]
    assert rows[0]["speedup"] == 1.0 and all(len(r["images_per_s"]) == 2 for r in rows)
    assert "| cn14 | onednn_on | default |" in (tmp_path / "benchmark_train.md").read_text()
    with pytest.raises(ValueError, match="unknown environment.*'mkl'"):
        step_speed.measure_environments("cn14", (32, 64), 1, ["mkl"])
