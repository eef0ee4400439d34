"""Validation during training: mIoU of the current weights, prediction images, the best model so far."""

import numpy as np

from contextnet_tf import data
from contextnet_tf.evaluation import metrics as evaluation
from contextnet_tf.evaluation.prediction import Predictor
from contextnet_tf.models import copy_weights_by_name


def val_batches(config):
    """Full-size, unaugmented batches of `config`'s validation split (its eval batch size, cache and label source)."""
    return data.make_dataset(
        config.dataset,
        config.data_dir,
        config.val_split,
        training=False,
        batch_size=config.eval_batch_size,
        cache=config.cache,
        label_source=config.label_source,
    )


def val_predictor(model, config):
    """The `Predictor` validation runs `model` with: `config`'s flip and scales (none given: the model's input
    scale)."""
    return Predictor(model, flip=config.eval_flip, scales=config.eval_scales or None)


def evaluate_on_val(model, config, batches=None):
    """`evaluation.evaluate` of `model` on `config`'s validation split with its evaluation settings (flip, scales,
    at most ``eval_max_images``); `batches` reuses a `val_batches` dataset already made. `model` may be a
    `val_predictor` of the model, reused across calls so that it keeps the functions it traced."""
    return evaluation.evaluate(
        model if isinstance(model, Predictor) else val_predictor(model, config),
        val_batches(config) if batches is None else batches,
        data.get_info(config.dataset),
        max_images=config.eval_max_images,
    )


class Validator:
    """Evaluates the training model's weights on the validation split with a logits-only copy of the model.

    Args:
        config: the run's `TrainConfig` (dataset, split, evaluation settings).
        info: the dataset's `DatasetInfo`.
        model_fn: ``model_fn(input_shape, aux) -> keras.Model``, the builder of the training model.
    """

    def __init__(self, config, info, model_fn):
        self.config = config
        self.info = info
        self.dataset = val_batches(config)
        self.samples = self._take_samples(config.num_prediction_images)
        # Sizes known at run time only: the saved final model runs at any size. One predictor per use for the whole
        # run: each validation copies the new weights into the same variables, which the functions traced at the
        # first validation read (a new Predictor per validation traced them again, about 2 s each time).
        self.model = model_fn((None, None, 3), False)
        self.predictor = val_predictor(self.model, config)
        self.sample_predictor = Predictor(self.model)

    def _take_samples(self, count):
        images, labels = [], []
        for batch_images, batch_labels in self.dataset:
            images.append(np.asarray(batch_images))
            labels.append(np.asarray(batch_labels))
            if sum(len(x) for x in images) >= max(count, 1):
                break
        if not images:
            raise ValueError(f"the {self.config.val_split} split of {self.config.dataset} has no images")
        return np.concatenate(images)[: max(count, 1)], np.concatenate(labels)[: max(count, 1)]

    def evaluate(self, train_model):
        """Copies `train_model`'s weights into the evaluation model and returns `evaluation.evaluate`'s dict."""
        copy_weights_by_name(train_model, self.model)
        return evaluate_on_val(self.predictor, self.config, self.dataset)

    def prediction_image(self):
        """uint8 RGB grid, one row per sample: image | ground truth | prediction (call after `evaluate`)."""
        images, labels = self.samples
        if self.config.num_prediction_images < 1:
            return None
        predictions = self.sample_predictor.labels(images)
        rows = [
            np.concatenate(
                [
                    np.clip(image, 0, 255).astype(np.uint8),
                    data.colorize(label, self.info),
                    data.colorize(prediction, self.info),
                ],
                axis=1,
            )
            for image, label, prediction in zip(images, labels, predictions)
        ]
        return np.concatenate(rows, axis=0)
