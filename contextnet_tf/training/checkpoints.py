"""Checkpoints of a run (`tf.train.CheckpointManager`) and its saved `.keras` models.

A checkpoint holds the step, the best validation mIoU so far, the model's variables, the optimiser's variables
(iterations included, which drive the learning-rate schedule) and the dropout layers' random-generator states
(Keras keeps those outside the variables `tf.train.Checkpoint` reaches through the model), so a restored run
continues exactly where the saved one was.
"""

import os

import keras
import tensorflow as tf


def dropout_generator_states(model):
    """{layer name: tf.Variable} of the random-generator state of every layer that owns a `SeedGenerator`."""
    states = {}
    for layer in model.layers:
        generator = getattr(layer, "seed_generator", None)
        if generator is not None:
            states[layer.name] = generator.state.value
    return states


class RunCheckpoints:
    """The step counter, best score and training state of a run, saved under `directory`.

    Args:
        directory: checkpoint folder to save to (the run's on the chief; a scratch folder on other workers, which
            must take part in every save of a multi-worker run).
        model: the training model (with its auxiliary heads, if any).
        optimizer: its optimiser, already built (`optimizer.build(model.trainable_variables)`).
        max_to_keep: checkpoints kept by `tf.train.CheckpointManager`.
        restore_directory: folder to resume from (default `directory`); every worker resumes from the chief's.
    """

    def __init__(self, directory, model, optimizer, max_to_keep=3, restore_directory=None):
        self.restore_directory = restore_directory or directory
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.best_miou = tf.Variable(-1.0, dtype=tf.float64, trainable=False, name="best_miou")
        self.best_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="best_step")
        self.checkpoint = tf.train.Checkpoint(
            step=self.step,
            best_miou=self.best_miou,
            best_step=self.best_step,
            model=model,
            optimizer=optimizer,
            dropout_rng=dropout_generator_states(model),
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)

    @property
    def latest(self):
        """Path of the latest checkpoint, or None."""
        return self.manager.latest_checkpoint

    def restore_latest(self):
        """Restores the latest checkpoint if there is one; returns the restored step (0 when starting fresh)."""
        path = tf.train.latest_checkpoint(self.restore_directory)
        if path is None:
            return 0
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.step.numpy())

    def save(self, step):
        """Saves the state after `step` steps; returns the checkpoint path."""
        self.step.assign(step)
        return self.manager.save(checkpoint_number=step)


def inference_model(train_model):
    """The logits-only model sharing `train_model`'s layers (drops auxiliary heads; no copy of weights)."""
    if isinstance(train_model.output, dict):
        return keras.Model(train_model.input, train_model.output["logits"], name=train_model.name)
    return train_model


def save_keras_model(model, path):
    """Saves `model` as a `.keras` file atomically (write to a temporary name, then rename)."""
    tmp = f"{path}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)
