"""Every variant through `build_model`: shapes, odd sizes, names, save/reload, weight transfer, gradients, JAX."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import MODEL_NAMES, build_model
from contextnet_tf.models import ABLATION_NAMES, OFF_PAPER_NAMES

SMALL = (64, 128, 3)


def _images(shape, batch=1, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(batch, *shape)).astype(np.float32)


def test_model_names():
    assert MODEL_NAMES == ("fast_scnn", "cn14", "cn12", "cn18", "cn124", "cn14-500", "cn14-160")
    # This project's variants are buildable by name but are not among the papers' networks.
    assert OFF_PAPER_NAMES == ("fast_scnn-ibn", "fast_scnn-ibna")
    assert not set(OFF_PAPER_NAMES) & set(MODEL_NAMES + ABLATION_NAMES)
    with pytest.raises(ValueError, match="unknown model 'fast_scnn-in'; choose one of .*fast_scnn-ibn"):
        build_model("fast_scnn-in")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_shape_finite_and_unique_names(name):
    model = build_model(name, SMALL, num_classes=5)
    out = keras.ops.convert_to_numpy(model(_images(SMALL, batch=2), training=False))
    assert out.shape == (2, 64, 128, 5) and out.dtype == np.float32
    assert np.isfinite(out).all()
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("shape", [(360, 480, 3), (1000, 1500, 3)])
def test_sizes_not_multiple_of_32_build_and_keep_size(name, shape):
    model = build_model(name, shape, num_classes=11)
    assert tuple(model.output.shape) == (None, shape[0], shape[1], 11)
    if shape[0] == 360 or name in ("fast_scnn", "cn14"):  # run the full-size forward on the two headline models
        out = keras.ops.convert_to_numpy(model(_images(shape), training=False))
        assert out.shape == (1, shape[0], shape[1], 11) and np.isfinite(out).all()


@pytest.mark.parametrize("name", ["fast_scnn", "cn124"])
def test_aux_outputs(name):
    model = build_model(name, SMALL, num_classes=4, aux=True)
    out = model(_images(SMALL), training=False)
    expected = {"logits", "aux_ltd", "aux_gfe"} if name == "fast_scnn" else {"logits", "aux_context"}
    assert set(out) == expected
    for value in out.values():
        assert tuple(value.shape) == (1, 64, 128, 4)


@pytest.mark.parametrize("name", ["fast_scnn", "cn14", "fast_scnn-ibn", "fast_scnn-ibna"])
def test_keras_save_and_reload_give_equal_outputs(name, tmp_path):
    model = build_model(name, SMALL, num_classes=3, aux=True)
    x = _images(SMALL)
    before = model(x, training=False)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    after = reloaded(x, training=False)
    for key in before:
        np.testing.assert_allclose(keras.ops.convert_to_numpy(after[key]), keras.ops.convert_to_numpy(before[key]),
                                   atol=1e-6)


@pytest.mark.parametrize("name", ["fast_scnn", "cn14", "cn124"])
def test_weights_transfer_between_input_sizes(name, tmp_path):
    big = build_model(name, (128, 256, 3), num_classes=3)
    path = tmp_path / "w.weights.h5"
    big.save_weights(path)
    small = build_model(name, (64, 128, 3), num_classes=3)
    small.load_weights(path)
    for a, b in zip(big.weights, small.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # A constant image gives (nearly) the same logits at any size away from the borders: same function.
    x_small, x_big = np.full((1, 64, 128, 3), 100.0, np.float32), np.full((1, 128, 256, 3), 100.0, np.float32)
    centre_small = keras.ops.convert_to_numpy(small(x_small, training=False))[0, 32, 64]
    centre_big = keras.ops.convert_to_numpy(big(x_big, training=False))[0, 64, 128]
    np.testing.assert_allclose(centre_small, centre_big, rtol=0.2, atol=0.2)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_gradient_reaches_every_trainable_weight(name):
    model = build_model(name, SMALL, num_classes=3, aux=True)
    x = _images(SMALL, batch=2)
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = sum(tf.reduce_mean(tf.square(v)) for v in out.values())
    grads = tape.gradient(loss, model.trainable_weights)
    missing = [w.path for w, g in zip(model.trainable_weights, grads, strict=True)
               if g is None or not np.any(keras.ops.convert_to_numpy(g))]
    assert not missing


@pytest.mark.parametrize("kwargs,match", [
    (dict(name="enet"), "unknown model 'enet'"),
    (dict(name="cn14", input_shape=(64, 128)), "input_shape must be"),
    (dict(name="cn14", input_shape=(64, 128, 1)), "input_shape must be"),
    (dict(name="cn14", input_shape=(16, 128, 3)), "too small"),
    (dict(name="cn14", num_classes=0), "num_classes"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)


JAX_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    from contextnet_tf import build_model
    for spec in json.loads(sys.argv[1]):
        data = np.load(spec["npz"])
        model = build_model(spec["name"], tuple(spec["shape"]), num_classes=spec["classes"])
        model.load_weights(spec["weights"])
        # predict: one XLA compilation of the whole network (eager JAX compiles op by op, far slower on a CPU).
        out = keras.ops.convert_to_numpy(model.predict(data["x"], verbose=0))
        print("MAXDIFF", spec["name"], float(np.abs(out - data["y"]).max()))
    """
)


@pytest.mark.slow
def test_jax_backend_gives_tensorflow_logits(tmp_path):
    """fast_scnn, cn14 and cn124 built under KERAS_BACKEND=jax (one subprocess) match TensorFlow within 1e-4."""
    pytest.importorskip("jax")
    shape, specs = (72, 136, 3), []
    rng = np.random.default_rng(3)
    for name in ("fast_scnn", "cn14", "cn124"):
        model = build_model(name, shape, num_classes=6)
        # Move BN statistics away from identity so the check covers them.
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                n = layer.gamma.shape[0]
                layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.5, n),
                                   rng.uniform(0.5, 2.0, n)])
        x = _images(shape)
        y = keras.ops.convert_to_numpy(model(x, training=False))
        model.save_weights(tmp_path / f"{name}.weights.h5")
        np.savez(tmp_path / f"{name}.npz", x=x, y=y)
        specs.append(dict(name=name, shape=shape, classes=6, weights=str(tmp_path / f"{name}.weights.h5"),
                          npz=str(tmp_path / f"{name}.npz")))
    # XLA at optimisation level 0: the same ops, compiled in a fraction of the time (this is a numerics check).
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags)
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, json.dumps(specs)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = {line.split()[1]: float(line.split()[2]) for line in result.stdout.splitlines()
             if line.startswith("MAXDIFF")}
    assert set(diffs) == {"fast_scnn", "cn14", "cn124"}
    assert max(diffs.values()) < 1e-4, diffs


# The model carries its recipe (issue 15): config keys, round trips, any size, clear load errors.

CAMVID_NAMES = [f"class{i}" for i in range(11)]
CAMVID_PALETTE = [[i * 20, 255 - i * 20, i] for i in range(11)]


def _recipe_model(**overrides):
    kwargs = dict(num_classes=11, input_scale=2.0, dataset="camvid", class_names=CAMVID_NAMES, palette=CAMVID_PALETTE)
    kwargs.update(overrides)
    return build_model("fast_scnn", **kwargs)


def test_config_holds_the_recipe_and_survives_save_and_load(tmp_path):
    from contextnet_tf import load_model
    from contextnet_tf.models import SegmentationModel

    model = _recipe_model(width=1.25)
    config = model.get_config()
    assert {k: config[k] for k in ("variant", "num_classes", "width", "aux", "input_scale", "dataset")} == dict(
        variant="fast_scnn", num_classes=11, width=1.25, aux=False, input_scale=2.0, dataset="camvid"
    )
    assert config["class_names"] == CAMVID_NAMES and config["palette"] == CAMVID_PALETTE
    assert config["input_shape"] == [None, None, 3]
    json.dumps(config)  # plain JSON, as the .keras file stores it
    clone = SegmentationModel.from_config(config)
    assert clone.get_config() == config and clone.count_params() == model.count_params()
    path = str(tmp_path / "renamed_anything.keras")
    model.save(path)
    loaded = load_model(path)
    assert isinstance(loaded, SegmentationModel) and loaded.get_config() == config
    x = _images((333, 517, 3))
    out = loaded(x)
    assert tuple(out.shape) == (1, 333, 517, 11)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), keras.ops.convert_to_numpy(model(x)), atol=1e-5)


@pytest.mark.parametrize("name", ["fast_scnn", "cn14", "cn124"])
def test_runtime_sized_graph_equals_a_static_model(name):
    """The SavedModel's any-size signature path (sizes unknown when traced) computes what a fixed-size model does."""
    model = build_model(name, num_classes=5)
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    rng = np.random.default_rng(1)
    for layer in bn:  # statistics far from identity, so a wrong resize or pooling window shows
        layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
        layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    runtime = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec((None, None, None, 3))])
    for shape in ((97, 131, 3), (64, 128, 3)):
        x = _images(shape, seed=shape[0])
        static = model.rebuild(input_shape=shape)
        np.testing.assert_allclose(runtime(x).numpy(), keras.ops.convert_to_numpy(static(x)), atol=1e-4)


def test_rebuild_changes_the_recipe_and_keeps_the_weights():
    model = _recipe_model(aux=True)
    x = _images((64, 96, 3))
    plain = model.rebuild(aux=False, input_shape=(64, 96, 3))
    assert plain.get_config()["aux"] is False and plain.get_config()["class_names"] == CAMVID_NAMES
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(x)), keras.ops.convert_to_numpy(model(x)["logits"]), atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(class_names=["a", "b"]), "2 class_names for a model of 11 classes"),
        (dict(palette=[[0, 0, 0]] * 10), "palette must be 11 RGB triples"),
        (dict(input_scale=0), "input_scale must be positive"),
    ],
)
def test_bad_recipes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _recipe_model(**kwargs)


def test_load_model_says_missing_or_corrupt(tmp_path):
    from contextnet_tf import load_model

    with pytest.raises(FileNotFoundError, match="no model file at"):
        load_model(str(tmp_path / "missing.keras"))
    path = tmp_path / "model.keras"
    _recipe_model().save(str(path))
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.keras"):
        load_model(str(truncated))
