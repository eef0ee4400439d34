"""reports.seeded: the verdict rule on hand-computed cases, the JSON record it can be recomputed from, the arms of a
varied setting, and experiments/compare.py end to end (train, record, reuse)."""

import json
import math
import os
import subprocess
import sys

import pytest

from contextnet_tf import data
from contextnet_tf.reports import seeded
from contextnet_tf.training import TrainConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

A = [0.30, 0.32, 0.34]  # mean 0.32, sample std 0.02
B = [0.36, 0.38, 0.40]  # mean 0.38, sample std 0.02: d = 0.06, se = sqrt(2 * 0.02**2 / 3) = 0.016330
SE = math.sqrt(2 * 0.02 ** 2 / 3)


def test_summary_is_mean_and_sample_std():
    s = seeded.summarise(A)
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.32, abs=1e-12) and s["std"] == pytest.approx(0.02, abs=1e-12)
    assert seeded.summarise([0.5])["std"] is None
    with pytest.raises(ValueError, match="at least one"):
        seeded.summarise([])


@pytest.mark.parametrize("claim, margin, verdict", [
    ("higher", None, "reproduced"),      # [0.0273, 0.0927] above 0
    ("lower", None, "contradicted"),     # the whole interval on the other side
    ("same", 0.10, "reproduced"),        # inside [-0.1, 0.1]
    ("same", 0.05, "inconclusive"),      # crosses 0.05
    ("same", 0.02, "contradicted"),      # entirely above 0.02
])
def test_verdicts_of_a_clear_difference(claim, margin, verdict):
    result = seeded.judge(A, B, claim, margin)
    assert result["difference"] == pytest.approx(0.06, abs=1e-12) and result["se"] == pytest.approx(SE, rel=1e-12)
    assert result["interval"] == pytest.approx([0.06 - 2 * SE, 0.06 + 2 * SE], rel=1e-12)
    assert result["verdict"] == verdict


def test_a_difference_within_the_noise_is_inconclusive_either_way():
    close = [0.31, 0.33, 0.35]  # d = 0.01 < 2 se = 0.0327
    assert seeded.judge(A, close, "higher")["verdict"] == "inconclusive"
    assert seeded.judge(A, close, "lower")["verdict"] == "inconclusive"
    # Swapping the arms mirrors the difference and the claim.
    assert seeded.judge(B, A, "lower")["verdict"] == "reproduced"
    assert seeded.judge(B, A, "higher")["verdict"] == "contradicted"


def test_one_seed_cannot_be_judged_and_bad_claims_are_refused():
    result = seeded.judge([0.3], [0.9], "higher")
    assert result["verdict"] == "inconclusive" and "at least 2 seeds" in result["reason"] and result["se"] is None
    with pytest.raises(ValueError, match="claim must be one of"):
        seeded.judge(A, B, "better")
    with pytest.raises(ValueError, match="positive margin"):
        seeded.judge(A, B, "same")


def test_the_record_recomputes_its_verdicts_and_renders(tmp_path):
    class Run:  # the fields of studies.StudyRun the record reads
        def __init__(self, seed, score):
            self.workdir, self.metrics, self.train_seconds = f"/runs/x_s{seed}", {"miou": score}, 60.0 * (seed + 1)
            self.config = {"seed": seed, "val_split": "sequence:0006R0"}

    runs = {"input": [Run(s, v) for s, v in enumerate(A)], "eighth": [Run(s, v) for s, v in enumerate(B)]}
    record = seeded.results_record(runs, [("input", "eighth", "same", 0.01)])
    assert record["split"] == "sequence:0006R0" and record["comparisons"][0]["verdict"] == "contradicted"
    path = tmp_path / "study" / "comparison.json"
    seeded.write_record(str(path), record)
    loaded = json.loads(path.read_text())
    assert [r["score"] for r in loaded["arms"]["eighth"]["runs"]] == B
    again = seeded.verdicts_from_record(loaded, [("input", "eighth", "higher", None)])
    assert again[0]["verdict"] == "reproduced" and again[0]["difference"] == pytest.approx(0.06, abs=1e-12)
    with pytest.raises(ValueError, match="no arm 'other'"):
        seeded.verdicts_from_record(loaded, [("input", "other", "higher", None)])
    table = seeded.markdown(loaded)
    assert "| input | 0, 1, 2 | 32.00 +- 2.00 | 30.00, 32.00, 34.00 | 2.0 |" in table
    assert "| eighth same as input (margin 1.00) | 6.00 | [2.73, 9.27] | contradicted |" in table
    runs["eighth"][0].config = {"seed": 0, "val_split": "val"}
    with pytest.raises(ValueError, match="different splits"):
        seeded.results_record(runs)


def test_budget_record_judges_each_arm_against_its_smaller_budget():
    class Run:  # the fields of studies.StudyRun the record reads
        def __init__(self, seed, score):
            self.workdir, self.metrics, self.train_seconds = f"/runs/x_s{seed}", {"miou": score}, 60.0
            self.config = {"seed": seed, "val_split": "sequence:0006R0"}

    def arm(scores):
        return [Run(s, v) for s, v in enumerate(scores)]

    record = seeded.budget_record({
        2000: {"cn14": arm([0.30, 0.31, 0.29]), "cn12": arm([0.40, 0.41, 0.39])},
        1000: {"cn14": arm([0.29, 0.31, 0.30]), "cn12": arm([0.30, 0.31, 0.29]), "cn18": arm([0.2, 0.2, 0.2])}})
    assert record["budgets"] == [1000, 2000] and record["split"] == "sequence:0006R0"
    assert list(record["arms"]) == ["cn14 @ 1000", "cn12 @ 1000", "cn18 @ 1000", "cn14 @ 2000", "cn12 @ 2000"]
    verdicts = {(c["baseline"], c["arm"]): (c["verdict"], round(c["difference"], 12)) for c in record["comparisons"]}
    # cn12 gained 10 points with a spread of 1: still rising; cn14 gained nothing; cn18 has no second budget.
    assert verdicts == {("cn14 @ 1000", "cn14 @ 2000"): ("inconclusive", 0.0),
                        ("cn12 @ 1000", "cn12 @ 2000"): ("reproduced", 0.1)}
    assert "| cn12 @ 2000 higher than cn12 @ 1000 | 10.00 | [8.37, 11.63] | reproduced |" in seeded.markdown(record)
    with pytest.raises(ValueError, match="at least two distinct budgets"):
        seeded.budget_record({1000: {"cn14": arm([0.3, 0.3])}})
    with pytest.raises(ValueError, match="no arm was trained at every budget"):
        seeded.budget_record({1000: {"cn14": arm([0.3])}, 2000: {"cn12": arm([0.3])}})


def test_arms_of_a_varied_setting():
    make = lambda **kw: TrainConfig(model="cn14", dataset="synthetic", **kw)  # noqa: E731
    arms = seeded.arms_varying(make, "crop", [(64, 96), (32, 48)])
    assert list(arms) == ["64x96", "32x48"] and arms["32x48"].crop == (32, 48)
    assert list(seeded.arms_varying(make, "aux_weight", [0.4, 0.0])) == ["0.4", "0"]
    for field, values, given, message in (
            ("seed", [0, 1], (), "seeds are --seeds"),
            ("lr", [0.1, 0.2], ("lr",), "--vary=lr and --lr were both given"),
            ("lr", [0.1], (), "at least 2 distinct values"),
            ("lr", [0.1, 0.1], (), "at least 2 distinct values"),
            ("colour", [1, 2], (), "no field 'colour'")):
        with pytest.raises(ValueError, match=message):
            seeded.arms_varying(make, field, values, given)


@pytest.mark.slow
def test_compare_trains_every_arm_and_seed_and_reuses_them(tmp_path):
    city = str(tmp_path / "city")
    data.generate_synthetic_city(city, num_train=4, num_val=2, image_size=(64, 96), seed=3)
    root = tmp_path / "cmp"
    argv = [sys.executable, os.path.join(REPO, "experiments", "compare.py"), "--model=cn14-detail",
            "--dataset=synthetic", f"--data_dir={city}", f"--workdir={root}", "--vary=lr", "--values=0.045",
            "--values=0.001", "--seeds=3,4", "--claim=higher", "--steps=2", "--batch_size=2", "--crop=64x96",
            "--eval_every=0", "--noprogress"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    first = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(os.listdir(root)) == ["0.001_s3", "0.001_s4", "0.045_s3", "0.045_s4", "comparison.json",
                                        "comparison.md"]
    record = json.loads((root / "comparison.json").read_text())
    for arm, lr in (("0.045", 0.045), ("0.001", 0.001)):
        for run, seed in zip(record["arms"][arm]["runs"], (3, 4)):
            config = json.loads((root / f"{arm}_s{seed}" / "config.json").read_text())
            assert config["lr"] == lr and config["seed"] == seed and run["seed"] == seed
            with open(root / f"{arm}_s{seed}" / "val_metrics.json") as f:
                assert run["score"] == json.load(f)["miou"]
            assert run["train_seconds"] > 0
    judged = record["comparisons"][0]
    assert judged["verdict"] == seeded.judge([r["score"] for r in record["arms"]["0.045"]["runs"]],
                                             [r["score"] for r in record["arms"]["0.001"]["runs"]],
                                             "higher")["verdict"]
    assert "verdict" in first.stdout and "0.001 higher than 0.045" in first.stdout
    # Again: the finished runs are reused (not retrained), the record is the same.
    stamp = (root / "0.045_s3" / "final.keras").stat().st_mtime_ns
    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    assert (root / "0.045_s3" / "final.keras").stat().st_mtime_ns == stamp
    assert json.loads((root / "comparison.json").read_text())["arms"] == record["arms"]
    # The same folder with another shared setting: refused in one line, naming it.
    third = subprocess.run([*argv, "--batch_size=1"], capture_output=True, text=True, env=env, timeout=900)
    assert third.returncode == 1 and "batch_size 2 -> 1" in third.stderr, third.stderr[-3000:]


def test_curves_average_the_seeds_at_their_common_steps_and_say_whether_still_rising(tmp_path):
    class Run:
        def __init__(self, name, points):
            self.workdir = str(tmp_path / name)
            os.makedirs(self.workdir)
            with open(os.path.join(self.workdir, "metrics.jsonl"), "w") as f:
                f.write(json.dumps({"step": 10, "split": "train", "loss": 1.0}) + "\n")
                for step, miou in points:
                    f.write(json.dumps({"step": step, "split": "val", "miou": miou}) + "\n")

    runs = {"a": [Run("a0", [(100, 0.10), (200, 0.20), (300, 0.30)]), Run("a1", [(100, 0.12), (200, 0.22), (300, 0.34)]),
                  Run("a2", [(100, 0.14), (200, 0.24)])],  # a2 stopped early: step 300 is not common to all seeds
            "b": [Run("b0", [(100, 0.30), (200, 0.31)]), Run("b1", [(100, 0.30), (200, 0.29)])]}
    curves = seeded.curves(runs)
    assert curves["a"]["steps"] == [100, 200] and curves["a"]["n"] == 3
    assert curves["a"]["mean"] == pytest.approx([0.12, 0.22], abs=1e-12)
    assert curves["a"]["std"] == pytest.approx([0.02, 0.02], abs=1e-12)
    assert seeded.still_rising(curves["a"])["verdict"] == "reproduced"  # +0.10 with se 0.0163
    flat = seeded.still_rising(curves["b"])
    assert flat["verdict"] == "inconclusive" and flat["steps"] == [100, 200] and flat["difference"] == pytest.approx(0.0)
    assert seeded.still_rising({"steps": [100], "values": [[0.1]]}) is None
    # The record's curves and verdicts, and the notebooks' one line per arm with two evaluations or more.
    record = seeded.add_curves({"arms": {}}, {**runs, "c": [Run("c0", [(100, 0.5)])]})
    assert record["curves"]["a"] == curves["a"] and record["still_rising"]["c"] is None
    assert record["still_rising"]["b"] == flat
    assert seeded.still_rising_lines(record) == [
        f"a: step 100 -> 200: +10.00 points ({record['still_rising']['a']['reason']}); still rising by the rule: True",
        f"b: step 100 -> 200: +0.00 points ({flat['reason']}); still rising by the rule: False"]


def test_evaluation_arms_join_the_record():
    record = {"arms": {}, "comparisons": []}
    seeded.add_scores(record, "half input", [0, 1, 2], A, "downscaled by 2")
    seeded.add_scores(record, "full input", [0, 1, 2], B, "as trained")
    assert record["arms"]["half input"]["summary"]["mean"] == pytest.approx(0.32)
    judged = seeded.verdicts_from_record(record, [("full input", "half input", "lower", None)])
    assert judged[0]["verdict"] == "reproduced"
    with pytest.raises(ValueError, match="already has an arm"):
        seeded.add_scores(record, "half input", [0], [0.1], "again")
    with pytest.raises(ValueError, match="2 seeds but 1 scores"):
        seeded.add_scores(record, "other", [0, 1], [0.1], "short")
