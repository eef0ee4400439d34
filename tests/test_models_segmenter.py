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

SMALL = (64, 128, 3)


def _images(shape, batch=1, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, size=(batch, *shape)).astype(np.float32)


def test_model_names():
    assert MODEL_NAMES == ("fast_scnn", "cn14", "cn12", "cn18", "cn124", "cn14-500", "cn14-160")


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


@pytest.mark.parametrize("name", ["fast_scnn", "cn14"])
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
        out = keras.ops.convert_to_numpy(model(data["x"], training=False))
        print("MAXDIFF", spec["name"], float(np.abs(out - data["y"]).max()))
    """
)


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
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", JAX_SCRIPT, json.dumps(specs)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = {line.split()[1]: float(line.split()[2]) for line in result.stdout.splitlines()
             if line.startswith("MAXDIFF")}
    assert set(diffs) == {"fast_scnn", "cn14", "cn124"}
    assert max(diffs.values()) < 1e-4, diffs
