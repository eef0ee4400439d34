"""contextnet_tf.reports.studies and the single-branch ContextNets: zeroed fusion inputs, ensembles, class groups, reuse of
finished study runs."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest

from contextnet_tf import build_model, data
from contextnet_tf.reports import studies
from contextnet_tf.models import ABLATION_NAMES
from contextnet_tf.training import TrainConfig
from contextnet_tf.training.run_dir import RunRecordError

SHAPE = (64, 96, 3)


def _randomize_batch_norm(model, seed=0):
    """BN statistics far from identity, so a zeroed projection is not zero by accident."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.5, beta.shape),
                rng.normal(0, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape),
            ])
    return model


def _images(seed=0, n=2):
    return np.random.default_rng(seed).uniform(0, 255, (n, *SHAPE)).astype(np.float32)


def _layer_output(model, name, images):
    return keras.Model(model.input, model.get_layer(name).output)(images).numpy()


@pytest.mark.parametrize("name,which,zeroed,kept", [
    ("cn14", "detail", ["fusion_high_pw_bn"], ["fusion_low_pw_bn"]),
    ("cn14", "context", ["fusion_low_pw_bn"], ["fusion_high_pw_bn"]),
    ("cn124", "detail", ["fusion2_high_pw_bn", "fusion_high_pw_bn"], ["fusion2_low_pw_bn"]),
    ("cn124", "context", ["fusion2_low_pw_bn"], ["fusion2_high_pw_bn", "fusion_high_pw_bn"]),
    ("fast_scnn", "skip", ["ffm_high_pw_bn"], ["ffm_low_pw_bn"]),
    ("fast_scnn", "global", ["ffm_low_pw_bn"], ["ffm_high_pw_bn"]),
])
def test_zero_fusion_input_contributes_exactly_zero(name, which, zeroed, kept):
    model = _randomize_batch_norm(build_model(name, SHAPE, num_classes=5))
    images = _images()
    before = model(images).numpy()
    ablated = studies.zero_fusion_input(model, which)
    for layer in zeroed:
        assert np.abs(_layer_output(model, layer, images)).max() > 1e-3  # not zero before
        np.testing.assert_array_equal(_layer_output(ablated, layer, images), 0.0)
    for layer in kept:
        np.testing.assert_allclose(_layer_output(ablated, layer, images), _layer_output(model, layer, images),
                                   atol=1e-5)
    # The original is untouched and the ablation changes the prediction.
    np.testing.assert_array_equal(model(images).numpy(), before)
    assert np.abs(ablated(images).numpy() - before).max() > 1e-3


def test_zeroed_detail_branch_is_cut_off():
    """With the detail contribution zeroed, the detail branch's weights no longer affect the logits."""
    ablated = studies.zero_fusion_input(_randomize_batch_norm(build_model("cn14", SHAPE, 5)), "detail")
    images = _images(1)
    out = ablated(images).numpy()
    layer = ablated.get_layer("detail_conv1")
    layer.set_weights([w + 1.0 for w in layer.get_weights()])
    np.testing.assert_allclose(ablated(images).numpy(), out, atol=1e-5)


def test_zero_fusion_input_rejects_wrong_branch_names():
    with pytest.raises(ValueError, match="skip, global"):
        studies.zero_fusion_input(build_model("fast_scnn", SHAPE, 5), "detail")
    with pytest.raises(ValueError, match="detail, context"):
        studies.zero_fusion_input(build_model("cn14", SHAPE, 5), "skip")
    with pytest.raises(ValueError, match="no fusion unit"):
        studies.zero_fusion_input(build_model("cn14-context", SHAPE, 5), "detail")


def test_single_branch_networks():
    context = build_model("cn14-context", SHAPE, 5)
    detail = build_model("cn14-detail", SHAPE, 5)
    joint = build_model("cn14", SHAPE, 5)
    names = {m.name: {layer.name for layer in m.layers} for m in (context, detail, joint)}
    assert not any(n.startswith(("detail", "fusion")) for n in names["cn14_context"])
    assert not any(n.startswith(("context", "fusion")) for n in names["cn14_detail"])
    # Each branch is exactly the joint network's branch: same layers, same weight shapes.
    for model, prefix in ((context, "context_"), (detail, "detail_")):
        for layer in model.layers:
            if layer.name.startswith(prefix) and layer.weights:
                shapes = [w.shape for w in joint.get_layer(layer.name).weights]
                assert [w.shape for w in layer.weights] == shapes, layer.name
        assert model(_images()).shape == (2, *SHAPE[:2], 5)
    # Parameters: joint = context + detail + fusion unit - one classifier (each single network has its own).
    count = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)  # noqa: E731
    fusion = sum(count_layer for layer in joint.layers if layer.name.startswith("fusion")
                 for count_layer in [sum(int(np.prod(w.shape)) for w in layer.trainable_weights)])
    classifier = sum(int(np.prod(w.shape)) for w in joint.get_layer("cls_conv").trainable_weights)
    assert count(joint) == count(context) + count(detail) + fusion - classifier
    assert set(build_model("cn14-context", SHAPE, 5, aux=True).output) == {"logits", "aux_context"}
    assert set(build_model("cn14-detail", SHAPE, 5, aux=True).output) == {"logits"}
    assert set(ABLATION_NAMES) == {"cn14-context", "cn14-detail"}
    with pytest.raises(ValueError, match="cn14-detail"):
        build_model("cn14-nothing", SHAPE, 5)


def test_ensemble_averages_softmax():
    a, b = build_model("cn14-context", SHAPE, 5), build_model("cn14-detail", SHAPE, 5)
    images = _images(2)
    probs = studies.ensemble([a, b], SHAPE)(images).numpy()
    expected = (keras.ops.softmax(a(images)).numpy() + keras.ops.softmax(b(images)).numpy()) / 2
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="at least two"):
        studies.ensemble([a], SHAPE)


def test_ensemble_of_seeds_of_one_network_that_share_its_name():
    """Seeds of one network load under the same name; the ensemble still averages each seed's own softmax and leaves
    the members' names as they were."""
    keras.utils.set_random_seed(1)
    a = build_model("cn14-detail", SHAPE, 5)
    keras.utils.set_random_seed(2)
    b = build_model("cn14-detail", SHAPE, 5)
    assert a.name == b.name
    images = _images(2)
    assert not np.allclose(a(images).numpy(), b(images).numpy())  # two different draws of the weights
    probs = studies.ensemble([a, b, a], SHAPE)(images).numpy()
    expected = (2 * keras.ops.softmax(a(images)).numpy() + keras.ops.softmax(b(images)).numpy()) / 3
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert a.name == b.name == build_model("cn14-detail", SHAPE, 5).name


def test_group_iou():
    info = data.get_info("camvid")
    class_iou = {name: 0.0 for name in info.class_names}
    class_iou.update({"pole": 0.2, "sign symbol": 0.4, "fence": None, "pedestrian": 0.5, "bicyclist": 0.3})
    groups = studies.group_iou({"class_iou": class_iou}, "camvid")
    assert groups == pytest.approx({"small": 0.3, "fine detail": 0.4, "rare": 0.3})
    cityscapes = {name: 0.5 for name in data.get_info("cityscapes").class_names}
    assert studies.group_iou({"class_iou": cityscapes}, "cityscapes") == pytest.approx(
        {"small": 0.5, "fine detail": 0.5, "rare": 0.5})
    with pytest.raises(ValueError, match="pole"):
        studies.group_iou({"class_iou": {"road": 1.0}}, "camvid")


def test_markdown_table():
    table = studies.markdown_table(
        [{"name": "cn14", "miou": 0.6543, "params": 856851, "fps": 3.14159}],
        {"model": "name", "mIoU %": "miou", "params": "params", "fps": "fps", "x": lambda r: None},
    )
    assert table.splitlines()[2] == "| cn14 | 65.4 | 856,851 | 3.14 | - |"


@pytest.mark.slow
def test_train_study_run_reuses_a_finished_run(tmp_path):
    city = str(tmp_path / "city")
    data.generate_synthetic_city(city, num_train=8, num_val=2, image_size=(64, 128), seed=0)
    config = TrainConfig(model="cn14-detail", dataset="synthetic", data_dir=city, steps=4, batch_size=2,
                         crop=(64, 64), eval_every=0, progress=False, checkpoint_every=4)
    runs = str(tmp_path / "runs")
    first = studies.train_study_run(runs, "detail", config)
    assert first.workdir == os.path.join(runs, "detail")
    confusion = np.asarray(first.metrics["confusion_matrix"], np.float64)  # the mIoU is that of its own matrix
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    assert first.miou == pytest.approx(np.mean(np.diag(confusion)[union > 0] / union[union > 0]))
    # Both val images, less their ignored pixels (the synthetic city has some).
    assert first.train_seconds > 0 and 0.5 * 2 * 64 * 128 < confusion.sum() == first.metrics["num_pixels"] <= 2 * 64 * 128
    assert first.model.name == "cn14_detail"
    with open(os.path.join(first.workdir, "metrics.jsonl")) as f:
        lines_before = f.read()
    mtime = os.path.getmtime(os.path.join(first.workdir, "final.keras"))
    second = studies.train_study_run(runs, "detail", config)
    assert os.path.getmtime(os.path.join(first.workdir, "final.keras")) == mtime  # not retrained
    assert second.metrics == first.metrics and second.train_seconds == first.train_seconds
    with open(os.path.join(first.workdir, "metrics.jsonl")) as f:
        assert f.read() == lines_before
    np.testing.assert_array_equal(second.model.get_weights()[0], first.model.get_weights()[0])
    with open(os.path.join(first.workdir, "val_metrics.json")) as f:
        assert json.load(f)["miou"] == first.miou
    # A finished run trained with other settings is not passed off as this config's result.
    with pytest.raises(RunRecordError, match="lr 0.045 -> 0.01"):
        studies.train_study_run(runs, "detail", dataclasses.replace(config, lr=0.01))


def test_class_iou_table_shows_each_network_and_group():
    names = data.get_info("camvid").class_names
    a = {"class_iou": {n: i / 20 for i, n in enumerate(names)}, "miou": 0.25}
    b = {"class_iou": {**{n: 0.5 for n in names}, "pole": None}, "miou": 0.5}
    table = studies.class_iou_table({"cn14": a, "cn12": b}, "camvid")
    lines = table.splitlines()
    assert lines[0] == "| class | group | cn14 IoU (%) | cn12 IoU (%) |"
    assert "| pole | small | 10.0 | n/a |" in lines
    assert "| bicyclist | fine detail, rare | 50.0 | 50.0 |" in lines
    assert lines[-1] == "| **mIoU** |  | **25.0** | **50.0** |"


def test_contextnet_recipe_is_the_notebooks_one_recipe_and_folder():
    recipe = studies.ContextNetRecipe(dataset="camvid", data_dir="/data/camvid", runs_root="runs/notebooks",
                                      holdout_sequence="0006R0", steps=2000, batch_size=8, crop=[192, 256],
                                      class_weighting="none", evals=4)
    # The folder name the committed notebooks' runs live in (cn14's runs are shared by the two notebooks).
    assert recipe.study_dir == os.path.join("runs/notebooks", "contextnet_camvid_0006R0_s2000_b8_c192x256_none")
    config = recipe.config("cn12")
    expected = TrainConfig.from_preset("contextnet_paper", model="cn12", dataset="camvid", data_dir="/data/camvid",
                                       holdout_sequence="0006R0", steps=2000, batch_size=8, crop=(192, 256),
                                       class_weighting="none", eval_every=500, progress=False)
    assert config == expected
    assert (config.model, config.crop, config.eval_every, config.val_split) == ("cn12", (192, 256), 500, "sequence:0006R0")
    assert config.train_split == "trainval-0006R0"
    # Every setting that changes the result changes the folder; without a held-out sequence the folder says val.
    others = [dataclasses.replace(recipe, **change) for change in (
        dict(steps=1000), dict(batch_size=16), dict(crop=(256, 256)), dict(class_weighting="median_frequency"),
        dict(holdout_sequence=None), dict(dataset="cityscapes"))]
    folders = {recipe.study_dir} | {other.study_dir for other in others}
    assert len(folders) == 7
    assert others[4].study_dir.endswith("contextnet_camvid_val_s2000_b8_c192x256_none")
    assert others[4].config("cn14").val_split == "val"
    # At least one evaluation however few steps.
    assert dataclasses.replace(recipe, steps=2, evals=4).config("cn14").eval_every == 1


def test_study_recipe_gives_an_arm_its_overrides_and_leaves_unset_class_weighting_out():
    recipe = studies.StudyRecipe(name="fast_scnn_ablations", preset="fast_scnn_paper", dataset="camvid",
                                 data_dir="/data/camvid", runs_root="runs/notebooks", holdout_sequence="0006R0",
                                 steps=2000, batch_size=8, crop=(192, 256), evals=4)
    # The folder name fast_scnn_ablations.ipynb's runs live in (no class weighting in it: the preset's is used).
    assert recipe.study_dir == os.path.join("runs/notebooks", "fast_scnn_ablations_camvid_0006R0_s2000_b8_c192x256")
    config = recipe.config("fast_scnn", aux_weight=0.0)
    expected = TrainConfig.from_preset("fast_scnn_paper", model="fast_scnn", dataset="camvid", data_dir="/data/camvid",
                                       holdout_sequence="0006R0", steps=2000, batch_size=8, crop=(192, 256),
                                       aux_weight=0.0, eval_every=500, progress=False)
    assert config == expected
    assert config.aux_weight == 0.0 and recipe.config("fast_scnn").aux_weight == 0.4
    assert config.class_weighting == TrainConfig.from_preset("fast_scnn_paper").class_weighting
    # An override wins over the recipe's own setting (e.g. a run that evaluates only at its end).
    assert recipe.config("fast_scnn", eval_every=0, steps=700).eval_every == 0
    assert recipe.config("fast_scnn", eval_every=0, steps=700).steps == 700
    # The ContextNet recipe is this recipe with the ContextNet preset and folder prefix.
    contextnet = studies.ContextNetRecipe(dataset="camvid", data_dir="/data/camvid", runs_root="runs/notebooks",
                                          holdout_sequence=None, steps=500, batch_size=8, crop=(192, 256),
                                          class_weighting="none")
    assert isinstance(contextnet, studies.StudyRecipe)
    assert (contextnet.name, contextnet.preset, contextnet.evals) == ("contextnet", "contextnet_paper", 4)
    assert contextnet.study_dir.endswith("contextnet_camvid_val_s500_b8_c192x256_none")
    with pytest.raises(TypeError):
        studies.ContextNetRecipe(dataset="camvid", data_dir="/d", runs_root="r", holdout_sequence=None, steps=5,
                                 batch_size=1, crop=(8, 8))  # the ContextNet notebooks always name their weighting


@pytest.mark.slow
def test_budget_check_trains_each_arm_again_at_the_smaller_budget_and_judges_it(tmp_path):
    """`StudyRecipe.budget_check`: the arms again at fewer steps, each a full schedule of its own in the smaller
    recipe's folder, judged against the runs given at the recipe's own steps (which are not retrained)."""
    from contextnet_tf.reports import seeded

    city = str(tmp_path / "city")
    data.generate_synthetic_city(city, num_train=8, num_val=2, image_size=(64, 128), seed=0)
    recipe = studies.ContextNetRecipe(dataset="synthetic", data_dir=city, runs_root=str(tmp_path / "runs"),
                                      holdout_sequence=None, steps=4, batch_size=2, crop=(64, 64),
                                      class_weighting="none", evals=2)
    runs = seeded.run_arms(recipe.study_dir, {"cn14-detail": recipe.config("cn14-detail")}, [0], progress=None)
    mtime = os.path.getmtime(os.path.join(runs["cn14-detail"][0].workdir, "final.keras"))
    record = recipe.budget_check(runs, 2, [0], progress=None)
    smaller_dir = dataclasses.replace(recipe, steps=2).study_dir
    assert smaller_dir != recipe.study_dir and smaller_dir.endswith("contextnet_synthetic_val_s2_b2_c64x64_none")
    with open(os.path.join(smaller_dir, "cn14-detail_s0", "config.json")) as f:
        assert json.load(f)["steps"] == 2  # a full schedule of 2 steps, not the first 2 of 4
    assert os.path.getmtime(os.path.join(runs["cn14-detail"][0].workdir, "final.keras")) == mtime
    assert record["budgets"] == [2, 4] and list(record["arms"]) == ["cn14-detail @ 2", "cn14-detail @ 4"]
    assert record["arms"]["cn14-detail @ 4"]["runs"][0]["workdir"] == runs["cn14-detail"][0].workdir
    (comparison,) = record["comparisons"]
    assert (comparison["baseline"], comparison["arm"], comparison["claim"]) == (
        "cn14-detail @ 2", "cn14-detail @ 4", "higher")
    assert comparison["verdict"] == "inconclusive"  # one seed: the rule does not judge
    for budget in (0, 4, 5):
        with pytest.raises(ValueError, match="between 0 and the study's 4"):
            recipe.budget_check(runs, budget, [0], progress=None)
