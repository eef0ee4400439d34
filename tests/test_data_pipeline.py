"""`make_dataset`: shapes and dtypes, evaluation equals the files, determinism, sharding, cache, test split,
label values caught at run time, CamVid, and feeding a Keras model."""

import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from contextnet_tf import data

SIZE = (64, 128)
CAMVID_DIR = os.environ.get("CONTEXTNET_CAMVID_DIR")


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    root = tmp_path_factory.mktemp("city")
    data.generate_synthetic_city(root, num_train=6, num_val=3, num_test=2, image_size=SIZE, seed=0)
    return root


def _batches(ds, count=None):
    return [(x.numpy(), y.numpy()) for x, y in (ds.take(count) if count else ds)]


def _expected(pairs, name="synthetic"):
    table = data.id_to_train_id(name)
    images = [cv2.imread(image)[..., ::-1].astype(np.float32) for image, _ in pairs]
    labels = [table[cv2.imread(label, cv2.IMREAD_UNCHANGED)] for _, label in pairs]
    return np.stack(images), np.stack(labels)


def test_training_batches(city):
    ds = data.make_dataset("synthetic", city, "train", training=True, batch_size=4, crop_size=(48, 40), seed=0)
    assert ds.element_spec == (tf.TensorSpec([4, 48, 40, 3], tf.float32), tf.TensorSpec([4, 48, 40], tf.int32))
    batches = _batches(ds, 4)  # 16 examples from 6 files: it repeats
    for images, labels in batches:
        assert images.min() >= 0 and images.max() <= 255 and images.std() > 5
        assert set(np.unique(labels)) <= set(range(19)) | {255}
    assert len({float(images.sum()) for images, _ in batches}) == 4


def test_square_crop_from_an_int_and_default_crop_is_the_image_size(city):
    ds = data.make_dataset("synthetic", city, "train", training=True, batch_size=2, crop_size=32, seed=0)
    assert ds.element_spec[0].shape == (2, 32, 32, 3)
    ds = data.make_dataset("synthetic", city, "train", training=True, batch_size=2, seed=0)
    assert ds.element_spec[1].shape == (2, *SIZE)


def test_evaluation_gives_the_files_in_order_without_augmentation(city):
    ds = data.make_dataset("synthetic", city, "val", training=False, batch_size=2)
    assert ds.element_spec[0].shape.as_list() == [None, *SIZE, 3]
    batches = _batches(ds)
    assert [len(images) for images, _ in batches] == [2, 1]  # no repeat, last batch kept
    images, labels = (np.concatenate(parts) for parts in zip(*batches))
    expected_images, expected_labels = _expected(data.list_examples("synthetic", city, "val"))
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)


def test_seeded_pipeline_is_reproducible(city):
    def make(seed, deterministic=True):
        return data.make_dataset("synthetic", city, "train", training=True, batch_size=3, crop_size=(32, 32),
                                 seed=seed, deterministic=deterministic)

    first, again, other = _batches(make(7), 4), _batches(make(7), 4), _batches(make(8), 4)
    for (a_images, a_labels), (b_images, b_labels) in zip(first, again):
        np.testing.assert_array_equal(a_images, b_images)
        np.testing.assert_array_equal(a_labels, b_labels)
    assert not np.array_equal(first[0][0], other[0][0])
    # Without the fixed order the same examples come out (each one's augmentation depends on its number only).
    loose = _batches(make(7, deterministic=False), 4)

    def sums(batches):
        return sorted(round(float(image.sum()), 1) for images, _ in batches for image in images)

    assert sums(loose) == sums(first)


def test_input_context_shards_files_and_batches_per_replica(city):
    shards = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        ds = data.make_dataset("synthetic", city, "train", training=False, batch_size=4, input_context=context)
        batches = _batches(ds)
        assert [len(images) for images, _ in batches] == [2, 1]  # per-replica batch 4 / 2; 3 files per shard
        shards.append(np.concatenate([images for images, _ in batches]))
    everything, _ = _expected(data.list_examples("synthetic", city, "train"))
    np.testing.assert_array_equal(shards[0], everything[0::2])
    np.testing.assert_array_equal(shards[1], everything[1::2])


def test_works_with_distribute_datasets_from_function(city):
    strategy = tf.distribute.get_strategy()

    def dataset_fn(context):
        return data.make_dataset("synthetic", city, "train", training=True, batch_size=2, crop_size=(32, 32),
                                 seed=1, input_context=context)

    images, labels = next(iter(strategy.distribute_datasets_from_function(dataset_fn)))
    assert images.shape == (2, 32, 32, 3) and labels.dtype == tf.int32


def test_cache_gives_the_same_tensors(city, tmp_path):
    plain = _batches(data.make_dataset("synthetic", city, "val", training=False, batch_size=3))
    in_memory = data.make_dataset("synthetic", city, "val", training=False, batch_size=3, cache=True)
    on_disk = data.make_dataset("synthetic", city, "val", training=False, batch_size=3, cache=str(tmp_path / "c"))
    for ds in (in_memory, on_disk):
        for _ in range(2):  # second pass reads the cache
            (images, labels), = _batches(ds)
            np.testing.assert_array_equal(images, plain[0][0])
            np.testing.assert_array_equal(labels, plain[0][1])
    assert any(name.startswith("c") for name in os.listdir(tmp_path))
    trained = data.make_dataset("synthetic", city, "train", training=True, batch_size=2, crop_size=32, seed=2,
                                cache=True, deterministic=True)
    uncached = data.make_dataset("synthetic", city, "train", training=True, batch_size=2, crop_size=32, seed=2,
                                 deterministic=True)
    np.testing.assert_array_equal(_batches(trained, 2)[1][0], _batches(uncached, 2)[1][0])


def test_unlabelled_test_split_loads_for_prediction(city):
    (images, labels), = _batches(data.make_dataset("synthetic", city, "test", training=False, batch_size=2))
    assert images.shape == (2, *SIZE, 3) and images.std() > 5
    assert (labels == 255).all()


def test_label_value_outside_the_table_fails_at_run_time_naming_the_file(tmp_path):
    data.generate_synthetic_city(tmp_path, num_train=2, num_val=0, image_size=(32, 64), seed=1)
    _, bad = data.list_examples("synthetic", tmp_path, "train")[1]
    values = cv2.imread(bad, cv2.IMREAD_UNCHANGED)
    values[5:9, 5:9] = 40
    cv2.imwrite(bad, values)
    for training in (True, False):
        ds = data.make_dataset("synthetic", tmp_path, "train", training=training, batch_size=2, crop_size=(32, 64),
                               scale_range=(1.0, 1.0), seed=0)
        with pytest.raises(tf.errors.InvalidArgumentError, match=f"outside the synthetic label table.*{bad}.*40"):
            _batches(ds, 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="CamVid has only the files source"):
        data.make_dataset("camvid", "/x", "train", training=True, batch_size=1, source="tfds")
    with pytest.raises(ValueError, match="source must be one of"):
        data.make_dataset("camvid", "/x", "train", training=True, batch_size=1, source="hdf5")
    with pytest.raises(ValueError, match="batch_size must be positive"):
        data.make_dataset("camvid", "/x", "train", training=True, batch_size=0)
    with pytest.raises(data.DataError, match="camvid data not found"):
        data.make_dataset("camvid", "/nonexistent", "train", training=True, batch_size=1)


def test_feeds_a_keras_model(city):
    ds = data.make_dataset("synthetic", city, "train", training=True, batch_size=2, crop_size=(32, 32), seed=0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.Conv2D(19, 3, padding="same")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255))
    history = model.fit(ds, steps_per_epoch=2, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.skipif(not CAMVID_DIR, reason="CONTEXTNET_CAMVID_DIR is not set")
def test_real_camvid():
    ds = data.make_dataset("camvid", CAMVID_DIR, "val", training=False, batch_size=4)
    images, labels = _batches(ds, 1)[0]
    expected_images, expected_labels = _expected(data.list_examples("camvid", CAMVID_DIR, "val")[:4], "camvid")
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(labels, expected_labels)
    assert images.shape == (4, 360, 480, 3) and (labels == 255).any()
    assert set(np.unique(labels)) <= set(range(11)) | {255}
    ds = data.make_dataset("camvid", CAMVID_DIR, "train", training=True, batch_size=2, crop_size=(256, 256), seed=0)
    images, labels = _batches(ds, 1)[0]
    assert images.shape == (2, 256, 256, 3) and set(np.unique(labels)) <= set(range(11)) | {255}


def test_classmix_pastes_whole_classes_and_leaves_the_examples_draws_alone(city):
    def make(classmix):
        config = data.AugmentConfig(classmix=classmix)
        return _batches(data.make_dataset("synthetic", city, "train", training=True, batch_size=3, crop_size=(32, 40),
                                          seed=5, deterministic=True, augment_config=config), 4)

    plain, mixed = make(0.0), make(1.0)
    changed = 0
    for (images, labels), (mixed_images, mixed_labels) in zip(plain, mixed):
        rolled_images, rolled_labels = np.roll(images, 1, axis=0), np.roll(labels, 1, axis=0)
        pasted = np.any(mixed_images != images, axis=-1) | (mixed_labels != labels)
        np.testing.assert_array_equal(mixed_images[pasted], rolled_images[pasted])
        np.testing.assert_array_equal(mixed_labels[pasted], rolled_labels[pasted])
        for i in range(3):  # a class is pasted whole or not at all (where it differs from the image's own pixels)
            for c in np.unique(rolled_labels[i][pasted[i]]):
                where = (rolled_labels[i] == c) & (np.any(rolled_images[i] != images[i], -1) | (labels[i] != c))
                assert mixed_labels[i][where].tolist() == [c] * int(where.sum())
            assert 255 not in rolled_labels[i][pasted[i]]
        changed += int(pasted.any())
    assert changed >= 2


def test_cutmix_mixes_batches_and_leaves_the_examples_draws_alone(city):
    def make(cutmix):
        config = data.AugmentConfig(cutmix=cutmix)
        return _batches(data.make_dataset("synthetic", city, "train", training=True, batch_size=3, crop_size=(32, 40),
                                          seed=5, deterministic=True, augment_config=config), 4)

    plain, mixed, again = make(0.0), make(1.0), make(1.0)
    changed = 0
    for (images, labels), (mixed_images, mixed_labels), (again_images, _) in zip(plain, mixed, again):
        np.testing.assert_array_equal(mixed_images, again_images)  # seeded
        pasted = np.any(mixed_images != images, axis=-1) | (mixed_labels != labels)
        rolled_images, rolled_labels = np.roll(images, 1, axis=0), np.roll(labels, 1, axis=0)
        # Every pixel is either the example's own (the same draws as without CutMix) or the previous example's.
        np.testing.assert_array_equal(mixed_images[pasted], rolled_images[pasted])
        np.testing.assert_array_equal(mixed_labels[pasted], rolled_labels[pasted])
        changed += int(pasted.any())
    assert changed >= 2
