"""Timing protocol (fake paths with known costs) and the benchmark program on a tiny resolution."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from contextnet_tf.deploy import timing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = np.zeros((1, 8, 8, 3), np.uint8)


def sleeping_path(upload=0.0, compute=0.0, download=0.0, network=True):
    """A `timing.Path` whose stages only sleep: known latencies, no CPU contention."""

    def stage(seconds, result="x"):
        def run(_):
            time.sleep(seconds)
            return result

        return run

    return timing.Path(
        name="fake",
        upload=stage(upload),
        compute=stage(compute),
        download=stage(download),
        network=stage(compute) if network else None,
        sync=(lambda _: None) if network else None,
    )


def test_end_to_end_counts_transfers_and_network_mode_does_not():
    path = sleeping_path(upload=0.01, compute=0.02, download=0.01)
    end_to_end = timing.time_path(path, IMAGE, "end_to_end", frames=5, burn_in=1)
    network = timing.time_path(path, IMAGE, "network", frames=5, burn_in=1)
    assert end_to_end["frames"] == 5 and end_to_end["burn_in"] == 1 and not end_to_end["truncated"]
    assert 0.039 <= end_to_end["latency_ms"]["p50"] / 1000 < 0.06
    assert 0.019 <= network["latency_ms"]["p50"] / 1000 < 0.035
    assert end_to_end["latency_ms"]["p50"] <= end_to_end["latency_ms"]["p90"]
    assert end_to_end["fps"] == pytest.approx(1000 / end_to_end["latency_ms"]["mean"], rel=0.1)


def test_pipelined_overlaps_transfers_with_compute():
    path = sleeping_path(upload=0.02, compute=0.02, download=0.02)
    sequential = timing.time_path(path, IMAGE, "end_to_end", frames=8, burn_in=1)
    pipelined = timing.time_path(path, IMAGE, "pipelined", frames=8, burn_in=1)
    assert pipelined["frames"] == 8
    assert pipelined["fps"] > 1.8 * sequential["fps"]  # Ideal: 3x (three equal stages overlap).
    assert pipelined["latency_ms"]["p50"] >= 55  # Each frame still passes all three stages.


def test_host_only_paths_have_no_network_or_pipelined_mode():
    path = sleeping_path(network=False)
    assert timing.time_path(path, IMAGE, "network", frames=2, burn_in=0) is None
    assert timing.time_path(path, IMAGE, "pipelined", frames=2, burn_in=0) is None


def test_time_budget_cuts_slow_paths_and_says_so():
    result = timing.time_path(sleeping_path(compute=0.05), IMAGE, "end_to_end", frames=100, burn_in=100,
                              max_seconds=0.3)
    assert result["truncated"]
    assert 3 <= result["frames"] < 100 and result["burn_in"] < 100


def test_unknown_mode_is_an_error():
    with pytest.raises(ValueError, match="mode"):
        timing.time_path(sleeping_path(), IMAGE, "fast")


def run_benchmark_program(tmp_path, *flags, env=None):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "experiments", "benchmark.py"), f"--output={output}", *flags],
        capture_output=True, text=True, cwd=ROOT, check=False, env={**os.environ, **(env or {})},
    )
    return result, output


@pytest.mark.slow
def test_benchmark_program_writes_valid_json(tmp_path):
    result, output = run_benchmark_program(
        tmp_path, "--model=fast_scnn", "--resolutions=64x128", "--paths=keras_unfolded,keras_folded,tflite,onnxruntime",
        "--modes=end_to_end,network,pipelined", "--frames=3", "--burn_in=1", f"--markdown={tmp_path}/bench.md",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["protocol"] == dict(batch=1, burn_in=1, frames=3, max_seconds=None, head="cls", interleaved=True,
                                      image="uniform noise, seed 0")
    assert report["environment"]["versions"]["tensorflow"]
    assert report["environment"]["threads"] == os.cpu_count()
    assert report["command"].startswith("python experiments/benchmark.py --output=")  # what a card quotes
    assert "--resolutions=64x128" in report["command"]
    rows = {(r["path"], r["mode"]): r for r in report["results"]}
    # Keras paths have all three modes; TFLite and ONNX Runtime only end_to_end.
    assert set(rows) == {(p, m) for p in ("keras_unfolded", "keras_folded")
                         for m in ("end_to_end", "network", "pipelined")} | {("tflite", "end_to_end"),
                                                                             ("onnxruntime", "end_to_end")}
    for row in rows.values():
        assert row["fps"] > 0 and row["frames"] == 3 and row["resolution"] == "64x128"
        assert row["latency_ms"]["p50"] <= row["latency_ms"]["p90"]
    assert rows["keras_folded", "end_to_end"]["ratio_to_folded"] == 1.0
    assert "| 64x128 | onnxruntime | end_to_end |" in (tmp_path / "bench.md").read_text()


@pytest.mark.slow
def test_benchmark_program_runs_under_jax(tmp_path):
    result, output = run_benchmark_program(
        tmp_path, "--resolutions=64x128", "--paths=keras_folded", "--modes=end_to_end", "--frames=2",
        "--burn_in=1", env={"KERAS_BACKEND": "jax"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["environment"]["backend"] == "jax"
    assert [(r["path"], r["mode"]) for r in report["results"]] == [("keras_folded", "end_to_end")]


@pytest.mark.slow
def test_benchmark_program_times_on_a_given_frame(tmp_path):
    import cv2

    frame = np.zeros((30, 40, 3), np.uint8)
    frame[:, :20] = (0, 0, 255)  # BGR red on the left, green on the right
    frame[:, 20:] = (0, 255, 0)
    cv2.imwrite(str(tmp_path / "frame.png"), frame)
    result, output = run_benchmark_program(
        tmp_path, "--resolutions=64x128", "--paths=keras_folded", "--frames=2", "--burn_in=1",
        f"--image={tmp_path}/frame.png",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(output.read_text())["protocol"]["image"] == f"{tmp_path}/frame.png"
    from contextnet_tf.deploy import speed

    timed = speed.benchmark_image(str(tmp_path / "frame.png"), 64, 128)  # resized, RGB, uint8
    assert timed.shape == (1, 64, 128, 3) and timed.dtype == np.uint8
    np.testing.assert_array_equal(timed[0, :, :60], np.broadcast_to([255, 0, 0], (64, 60, 3)))
    np.testing.assert_array_equal(timed[0, :, 68:], np.broadcast_to([0, 255, 0], (64, 60, 3)))
    noise = speed.benchmark_image(None, 64, 128)
    np.testing.assert_array_equal(noise, speed.benchmark_image(None, 64, 128))  # seeded
    (tmp_path / "broken.png").write_bytes(b"not an image")
    result, _ = run_benchmark_program(tmp_path, "--resolutions=64x128", f"--image={tmp_path}/broken.png")
    assert result.returncode != 0 and "--image" in result.stderr and "broken.png" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "flag, message",
    [("--resolutions=64by128", "expected HxW"), ("--model=nope.keras", "'nope.keras' does not exist")],
)
def test_benchmark_program_bad_flags_are_clear_errors(tmp_path, flag, message):
    result, _ = run_benchmark_program(tmp_path, flag, "--resolutions=64x128" if "resol" not in flag else flag)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_default_cpu_comparison_includes_int8():
    from contextnet_tf.deploy import speed

    assert "tflite_int8" in speed.default_paths() and "tflite" in speed.default_paths()


@pytest.mark.slow
def test_benchmark_records_the_share_of_boundary_cells_it_timed():
    """Each cls row carries the share of 1/8-resolution cells the last mile interpolated on the timed frame
    (`last_mile.boundary_share`, checked against a NumPy count in tests/test_evaluation_last_mile.py) of the timed
    network's own logits (here the unfolded twin's), the same for every path of one resolution; prob rows carry
    none; the table shows it."""
    from contextnet_tf.deploy import speed
    from contextnet_tf.evaluation import last_mile

    models = speed.models_at_resolutions("fast_scnn", [(64, 128), (32, 64)], num_classes=11)
    report = speed.run_benchmark(models, paths=["keras_unfolded", "keras_folded"], frames=2, burn_in=1,
                                 log=lambda line: None)
    for label, model in models.items():
        frame = speed.benchmark_image(None, *model.input_shape[1:3]).astype(np.float32)
        logits = np.asarray(last_mile.eighth_logits_model(model)([frame], training=False))
        cells = (logits.shape[1] + 1) * (logits.shape[2] + 1)
        shares = {r["boundary_share"] for r in report["results"] if r["resolution"] == label}
        assert len(shares) == 1  # one frame, one network per resolution
        # Folding rounds differently: allow one cell of difference.
        assert shares.pop() == pytest.approx(last_mile.boundary_share(logits), abs=1.01 / cells)
    table = speed.markdown_table(report)
    assert "| boundary cells |" in table.splitlines()[0]
    share = report["results"][0]["boundary_share"]
    assert table.splitlines()[2].endswith(f"| {100 * share:.1f}% |")
    prob = speed.run_benchmark({"64x128": models["64x128"]}, paths=["keras_folded"], head="prob", frames=2,
                               burn_in=1, log=lambda line: None)
    assert prob["results"][0]["boundary_share"] is None
    # A size whose logits are not exactly 1/8 of it takes the plain path: no share.
    odd = speed.models_at_resolutions("fast_scnn", [(60, 100)], num_classes=11)["60x100"]
    assert speed.frame_boundary_share(odd, speed.benchmark_image(None, 60, 100)) is None
    assert speed.markdown_table(prob).splitlines()[2].endswith("|  |")
