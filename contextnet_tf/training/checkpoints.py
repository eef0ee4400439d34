"""Checkpoints of a run (`tf.train.CheckpointManager`) and its saved `.keras` models.

A checkpoint holds the step, the best validation mIoU so far, the model's variables, the optimiser's variables
(iterations included, which drive the learning-rate schedule) and the dropout layers' random-generator states
(Keras keeps those outside the variables `tf.train.Checkpoint` reaches through the model), so a restored run
continues exactly where the saved one was.

Checkpoints are named ``ckpt-{step}``. Restoring tries them newest first: an unreadable one (truncated, corrupt) is
moved to ``checkpoints/unreadable/`` and the next one is used, and the log says which failed and which was used.
"""

import glob
import logging
import os
import re
import shutil

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
        self.max_to_keep = max_to_keep
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

    def restore_latest(self, owner=True):
        """Restores the newest readable checkpoint; returns the restored step (0 when there is none).

        A checkpoint that cannot be restored (truncated or corrupt files) is logged with its error and the next older
        one is tried. With `owner` (the chief), the unreadable ones are moved to ``unreadable/`` beside them and the
        checkpoint list is rewritten, so that later saves and resumes do not meet them again.

        Raises:
            ValueError: checkpoints exist but none can be restored; the message names each with its error.
        """
        failed = []
        for path in list_checkpoints(self.restore_directory)[::-1]:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError, OSError) as error:
                message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                failed.append((path, f"{type(error).__name__}: {message[:300]}"))
                logging.warning("checkpoint %s cannot be restored (%s); trying an older one", path, failed[-1][1])
                continue
            if failed:
                logging.warning("restored %s; newer checkpoint(s) %s could not be read", path,
                                ", ".join(p for p, _ in failed))
                if owner:
                    self._set_aside([p for p, _ in failed])
            return int(self.step.numpy())
        if failed:
            listed = "\n  ".join(f"{p}: {e}" for p, e in failed)
            raise ValueError(f"no checkpoint in {self.restore_directory} can be restored:\n  {listed}\n"
                             "they are truncated, corrupt or from another network; use a new --workdir")
        return 0

    def discard_from(self, step):
        """Deletes the checkpoints of steps >= `step` (weights already wrecked by a diverging run); returns the
        path of the newest one kept, or None."""
        doomed = [p for p in list_checkpoints(self.manager.directory) if checkpoint_step(p) >= step]
        for path in doomed:
            for name in tf.io.gfile.glob(f"{path}.*"):
                tf.io.gfile.remove(name)
        return self._rewrite_state()

    def _set_aside(self, paths):
        folder = os.path.join(self.manager.directory, "unreadable")
        os.makedirs(folder, exist_ok=True)
        for path in paths:
            for name in glob.glob(f"{path}.*"):
                shutil.move(name, os.path.join(folder, os.path.basename(name)))
            logging.warning("moved the unreadable checkpoint %s to %s", path, folder)
        self._rewrite_state()

    def _rewrite_state(self):
        """Points the directory's ``checkpoint`` list at the checkpoints still there; renews the manager."""
        directory = self.manager.directory
        kept = list_checkpoints(directory)
        state = os.path.join(directory, "checkpoint")
        if kept:
            tf.compat.v1.train.update_checkpoint_state(directory, kept[-1], all_model_checkpoint_paths=kept)
        elif os.path.exists(state):
            os.remove(state)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=self.max_to_keep)
        return kept[-1] if kept else None

    def save(self, step):
        """Saves the state after `step` steps; returns the checkpoint path."""
        self.step.assign(step)
        return self.manager.save(checkpoint_number=step)


def checkpoint_step(path):
    """The step of a checkpoint path ``.../ckpt-{step}``."""
    return int(re.search(r"-(\d+)$", path).group(1))


def list_checkpoints(directory):
    """Paths (without suffix) of the checkpoints in `directory`, oldest first: those of its ``checkpoint`` list and
    any other ``ckpt-N.index`` there (the list itself may be the damaged file), if their index file exists."""
    paths = set()
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError) as error:  # an unparsable ``checkpoint`` file
        logging.warning("the checkpoint list in %s cannot be read (%s); using the files there", directory, error)
        state = None
    if state is not None:
        paths.update(os.path.join(directory, os.path.basename(p)) for p in state.all_model_checkpoint_paths)
    paths.update(name[: -len(".index")] for name in glob.glob(os.path.join(directory, "ckpt-*.index")))
    # A listed checkpoint whose index file is gone (deleted by hand, set aside) is no checkpoint.
    return sorted((p for p in paths if re.search(r"-\d+$", p) and os.path.exists(f"{p}.index")), key=checkpoint_step)


def steps_done(directory):
    """The step of the newest checkpoint in `directory` (0 when there is none), read from its name."""
    paths = list_checkpoints(directory)
    return checkpoint_step(paths[-1]) if paths else 0


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
