"""The custom training loop: `tf.GradientTape` in a `tf.function`, written once for any `tf.distribute` strategy.

`train(config)` runs (or resumes) one run in ``config.workdir``: see `run_dir` for the folder it writes, `inputs`
for the resumable data order, `losses` for the loss and its scaling over replicas, `checkpoints` for what a
checkpoint holds. A run killed at any point and started again with the same config ends with the same weights as
an uninterrupted run. Before step 1 every image and label file of the splits used is decoded whole and checked
against the dataset's label table (`data.verify_examples`, cached). The run folder's record is append-only (`run_dir`):
a resume with other settings is refused unless ``allow_changes`` records them, and a run asked for no more steps than
it has done changes nothing. A loss that is not finite or explodes (`divergence.DivergenceGuard`), or non-finite
weights at a checkpoint, stop the run with `DivergenceError`, keeping only checkpoints from before it.
"""

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.models import build_model, copy_weights_by_name, dataset_recipe
from contextnet_tf.models.segmenter import load_model
from contextnet_tf.training import batch_norm, checkpoints, distribute, inputs, losses, optim
from contextnet_tf.training.divergence import DivergenceError, DivergenceGuard
from contextnet_tf.training.progress import TrainProgress
from contextnet_tf.training.run_dir import RunDir, RunRecordError  # noqa: F401 (raised by train)
from contextnet_tf.training.validation import Validator

# The former name of `DivergenceError` (a NaN or infinite loss is one kind of divergence).
NonFiniteLossError = DivergenceError


@dataclasses.dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        workdir: the run folder.
        step: the last step done.
        total_steps: the run's planned number of steps.
        metrics: the last validation metrics (`contextnet_tf.evaluation.metrics.evaluate` dict), or None.
        best_miou: best validation mIoU seen (None if never evaluated).
        best_step: its step.
        completed: True when the run reached `total_steps` (False after `stop_at_step`).
        model: the inference model (logits only) sharing the trained weights; for a run that had nothing left to
            do, its ``final.keras`` (None if it has none).
    """

    workdir: str
    step: int
    total_steps: int
    metrics: dict | None
    best_miou: float | None
    best_step: int
    completed: bool
    model: keras.Model | None


def precision_policy(config):
    """The Keras dtype policy name of a config (``float32`` unless mixed precision is on)."""
    if not config.mixed_precision:
        return "float32"
    precision = config.precision
    if precision == "auto":
        precision = "float16" if tf.config.list_physical_devices("GPU") else "bfloat16"
    return f"mixed_{precision}"


@contextlib.contextmanager
def dtype_policy(name):
    """Sets the global Keras dtype policy inside the block (layers built there keep it), then restores it."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def make_train_step(strategy, model, optimizer, *, ignore_label, aux_weight, weight_decay, class_weights=None,
                    aux_resolution="input", loss_implementation="fast", fused_batch_norm=True, ohem_threshold=None,
                    ohem_min_kept=0):
    """A `tf.function` running one optimiser step on a distributed batch; returns the global loss parts.

    Args:
        strategy: the strategy `model` and `optimizer` were created under.
        model: the training model (logits, or the aux dict).
        optimizer: a built Keras optimiser (possibly a `LossScaleOptimizer`).
        ignore_label, aux_weight, weight_decay, class_weights, ohem_threshold, ohem_min_kept: see
            `losses.segmentation_losses`.
        aux_resolution: ``input`` (the papers) or ``eighth`` (auxiliary losses at 1/8 resolution, a deviation; the
            step then runs `losses.aux_logits_view(model)`, which shares `model`'s variables).
        loss_implementation: ``fast`` or ``reference`` (`losses.segmentation_losses`; the benchmark compares them).
        fused_batch_norm: compute the batch norms with TensorFlow's fused kernel (`batch_norm.fused_training`: the
            same mathematics, faster); False keeps Keras' own (the benchmark compares them).

    Returns:
        ``step(batch) -> {"loss", "ce", "l2", <aux heads>}`` of float32 scalars, summed over replicas (so each is
        the global-batch value).
    """
    l2_variables = losses.l2_regularized_variables(model)
    forward = losses.aux_logits_view(model) if aux_resolution == "eighth" else model

    def replica_step(images, labels):
        fused = batch_norm.fused_training(forward) if fused_batch_norm else contextlib.nullcontext()
        with tf.GradientTape() as tape, fused:
            outputs = forward(images, training=True)
            parts = losses.segmentation_losses(
                outputs,
                labels,
                ignore_label=ignore_label,
                aux_weight=aux_weight,
                l2_variables=l2_variables,
                weight_decay=weight_decay,
                class_weights=class_weights,
                aux_resolution=aux_resolution,
                implementation=loss_implementation,
                ohem_threshold=ohem_threshold,
                ohem_min_kept=ohem_min_kept,
            )
            scaled_loss = optimizer.scale_loss(parts["loss"])
        gradients = tape.gradient(scaled_loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return parts

    @tf.function
    def train_step(batch):
        images, labels = batch
        parts = strategy.run(replica_step, args=(images, labels))
        return {name: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for name, value in parts.items()}

    return train_step


def _all_finite(variables):
    return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(tf.cast(v, tf.float32))) for v in variables]))


def run_class_weights(run, config, info):
    """The run's per-class loss weights (None for ``class_weighting="none"``).

    Computed once from the training split's label files (`losses.class_frequencies`, `losses.class_weights`) and
    stored in ``class_weights.json``, which a resumed run reads back so its loss does not change.
    """
    if config.class_weighting == "none":
        return None
    stored = run.read_json("class_weights.json")
    if stored is not None and stored.get("method") == config.class_weighting:
        return np.asarray(stored["weights"], np.float32)
    table = data.id_to_train_id(config.dataset)
    pairs = data.list_examples(config.dataset, config.data_dir, config.train_split, label_source=config.label_source)
    logging.info("class weights (%s): reading %d label files", config.class_weighting, len(pairs))
    label_maps = (data.read_train_ids(config.dataset, label_path, table) for _, label_path in pairs)
    pixels, image_pixels = losses.class_frequencies(label_maps, info.num_classes, info.ignore_label)
    weights = losses.class_weights(pixels, image_pixels, config.class_weighting)
    run.write_json("class_weights.json", {
        "method": config.class_weighting, "classes": list(info.class_names), "weights": weights.tolist(),
        "pixels": pixels.tolist(), "image_pixels": image_pixels.tolist(),
    })
    logging.info("class weights: %s", ", ".join(f"{n} {w:.2f}" for n, w in zip(info.class_names, weights)))
    return weights


def initialise_from(model, path):
    """Copies into `model` the weights of every layer of the ``.keras`` file `path`, matched by layer name.

    Every weighted layer of the file must exist in `model` with the same weight shapes (the same network, e.g. a
    finished run's inference model); layers of `model` the file lacks (the auxiliary heads of a training model) keep
    their fresh weights. Errors name the file and the layers at fault.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init_from: {path} does not exist")
    source = keras.saving.load_model(path, compile=False)
    targets = {layer.name: layer for layer in model.layers if layer.weights}
    source_layers = [layer for layer in source.layers if layer.weights]
    missing = [layer.name for layer in source_layers if layer.name not in targets]
    if missing:
        raise ValueError(f"--init_from {path}: {len(missing)} layers of {source.name} are not in {model.name} "
                         f"(first: {', '.join(missing[:3])}); is it the same network?")
    for layer in source_layers:
        weights = layer.get_weights()
        shapes = [tuple(w.shape) for w in weights]
        expected = [tuple(w.shape) for w in targets[layer.name].weights]
        if shapes != expected:
            raise ValueError(f"--init_from {path}: layer {layer.name} has weights {shapes}, the model needs {expected}")
        targets[layer.name].set_weights(weights)
    logging.info("initialised %d of %d layers with weights from %s", len(source_layers), len(targets), path)


def verify_data(config, progress=False):
    """Decodes every image and label file of the training split (and the validation split, when the run validates)
    whole and checks the labels against the dataset's table, once: files verified before are skipped
    (`data.verify_examples`'s cache). Raises `data.DataError` naming each bad file."""
    splits = list(dict.fromkeys([config.train_split] + ([config.val_split] if config.eval_every >= 0 else [])))
    examples = []
    for split in splits:
        examples += data.list_examples(config.dataset, config.data_dir, split, label_source=config.label_source)
    what = f"{config.dataset} {' and '.join(splits)}"
    logging.info("checking the %d images and labels of %s", len(examples), what)
    counts = data.verify_examples(config.dataset, list(dict.fromkeys(examples)), cache=True, progress=progress)
    logging.info("%s: %d files decoded and checked, %d unchanged since an earlier check", what, counts["decoded"],
                 counts["cached"])


def _nothing_to_do(run, config, done, total_steps, num_train):
    """The `TrainResult` of a run that has done `done` >= `total_steps` steps, without touching the run folder."""
    recorded = run.recorded_config()
    planned = recorded.total_steps(num_train) if recorded is not None else total_steps
    completed = done >= planned and os.path.exists(run.path("final.keras"))
    if completed:
        logging.info("%s: the run is already complete (%d of %d steps); nothing to do", run.workdir, done, planned)
    else:
        logging.warning("%s: %d steps done and %d asked for: nothing to do, the run is left as it is (its record "
                        "plans %d steps; run with those settings to continue it)", run.workdir, done, total_steps,
                        planned)
    best = run.read_json("best.json") or {}
    final = run.path("final.keras")
    return TrainResult(
        workdir=config.workdir, step=done, total_steps=planned, metrics=run.read_json("val_metrics.json"),
        best_miou=best.get("miou"), best_step=int(best.get("step", 0)), completed=completed,
        model=load_model(final) if os.path.exists(final) else None,
    )


def config_model_fn(config, info):
    """``model_fn(input_shape, aux)`` building `config`'s network (variant, width, input scale) for the dataset of
    `info`: what `train` builds unless given a `model_fn`, and what rebuilds a run's model from its checkpoints."""

    def model_fn(input_shape, aux):
        return build_model(
            config.model,
            input_shape,
            aux=aux,
            width=config.width,
            input_scale=getattr(config, "input_scale", 1.0),
            **dataset_recipe(info),
        )

    return model_fn


def train(config, model_fn=None):
    """Trains (or resumes) a segmentation model with the custom loop.

    Args:
        config: a `TrainConfig`; `config.workdir` is created or resumed.
        model_fn: optional ``model_fn(input_shape, aux) -> keras.Model`` building the network (e.g. a pruned one);
            called under the strategy's scope with the crop size (aux=True when `config.aux_weight` > 0) and
            outside it with the validation images' size (aux=False). Default: `config_model_fn`.

    Returns:
        A `TrainResult`. A run folder that has already done the steps asked for is left untouched (nothing is
        trained or rewritten).

    Raises:
        run_dir.RunRecordError: the run folder holds a run with other settings (see `RunDir.check_resume`).
        data.DataError: a bad image or label file (named).
        DivergenceError: the loss or the weights became NaN or infinite, or the loss exploded.
    """
    if not config.workdir:
        raise ValueError("config.workdir is required")
    keras.utils.set_random_seed(config.seed)
    if config.deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    strategy = distribute.make_strategy(config.strategy)
    chief = distribute.is_chief(strategy)
    info = data.get_info(config.dataset)
    num_train = len(data.list_examples(config.dataset, config.data_dir, config.train_split))
    if model_fn is None:
        model_fn = config_model_fn(config, info)
    run = RunDir(config.workdir, chief)
    total_steps = config.total_steps(num_train)
    done = checkpoints.steps_done(run.checkpoint_dir)
    if done >= total_steps and run.read_config_text() is not None and (
        done > total_steps or os.path.exists(run.path("final.keras"))
    ):
        return _nothing_to_do(run, config, done, total_steps, num_train)
    changes = run.check_resume(config, done)
    verify_data(config, progress=config.progress and chief)
    class_weights = run_class_weights(run, config, info)
    session = _Session(config, strategy, chief, info, run, model_fn, config.steps_per_epoch(num_train),
                       total_steps, precision_policy(config), class_weights)
    try:
        start_step = session.restore()
        run.record(config, start_step, changes)
        return session.run(start_step)
    finally:
        session.close()


class _Session:
    """One invocation of `train`: the built model, optimiser, checkpoints and validator, and the step loop."""

    def __init__(self, config, strategy, chief, info, run, model_fn, steps_per_epoch, total_steps, policy,
                 class_weights=None):
        self.config, self.strategy, self.chief, self.info, self.run_dir = config, strategy, chief, info, run
        self.steps_per_epoch, self.total_steps, self.policy = steps_per_epoch, total_steps, policy
        self.class_weights, self.model_fn = class_weights, model_fn
        with dtype_policy(policy), strategy.scope():
            self.model = model_fn((*config.crop, 3), config.aux_weight > 0)
            if config.init_from:
                initialise_from(self.model, config.init_from)  # a resumed run's checkpoint overrides these
            if strategy.num_replicas_in_sync > 1 and config.sync_batch_norm:
                distribute.synchronize_batch_norm(self.model)
            self.schedule = optim.poly_schedule(config.lr, total_steps, config.lr_power, config.end_lr)
            self.optimizer = optim.make_optimizer(
                config.optimizer, self.schedule, config.momentum, loss_scale=policy == "mixed_float16",
                ema_momentum=config.ema_momentum,
            )
            self.optimizer.build(self.model.trainable_variables)
        # Non-chief workers write their share of each save to a scratch folder (removed in `close`) and resume, like
        # the chief, from the run's checkpoints.
        self.scratch = None if chief else tempfile.mkdtemp(prefix=f"ckpt{distribute.task_suffix(strategy)}_")
        self.state = checkpoints.RunCheckpoints(
            self.scratch or run.checkpoint_dir, self.model, self.optimizer, config.keep_checkpoints,
            restore_directory=run.checkpoint_dir,
        )
        self.infer_model = checkpoints.inference_model(self.model)
        self.validator = None
        if chief and config.eval_every >= 0:
            with dtype_policy("float32"):
                self.validator = Validator(config, info, model_fn)
        self.metrics = None
        self.guard = DivergenceGuard(info.num_classes)

    def restore(self):
        """Restores the newest readable checkpoint; returns its step (0 for a new run)."""
        return self.state.restore_latest(owner=self.chief)

    def close(self):
        """Removes a non-chief worker's scratch checkpoints."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def validate(self, step):
        """Evaluates on the validation split, logs, draws predictions, keeps the best model."""
        if self.validator is None:
            return
        with optim.averaged_weights(self.optimizer, self.model.trainable_variables):
            metrics = self.metrics = self.validator.evaluate(self.infer_model)
        scalars = {k: metrics[k] for k in ("miou", "category_miou", "pixel_accuracy") if k in metrics}
        self.run_dir.log(step, "val", scalars)
        image = self.validator.prediction_image()
        if image is not None:
            self.run_dir.prediction_image(step, image)
        miou = metrics["miou"] if metrics["miou"] is not None else -1.0
        if miou > float(self.state.best_miou.numpy()):
            self.state.best_miou.assign(miou)
            self.state.best_step.assign(step)
            checkpoints.save_keras_model(self.validator.model, self.run_dir.path("best.keras"))
            self.run_dir.write_json("best.json", {"step": step, "miou": metrics["miou"], "metrics": metrics})

    def save_checkpoint(self, step):
        """Saves a checkpoint unless a weight is NaN or infinite (then raises, keeping the last good one)."""
        if not _all_finite(self.model.trainable_variables):
            raise DivergenceError(
                f"weights became NaN or infinite by step {step}; not saved. The last good checkpoint is "
                f"{self.state.latest}"
            )
        self.state.save(step)

    def diverged(self, step, parts, lr, reason):
        """Logs the bad step, discards the checkpoints its weights may already have wrecked, raises."""
        self.run_dir.log(step, "train", {**parts, "lr": lr})
        self.run_dir.flush()
        kept = self.state.discard_from(DivergenceGuard.first_bad_step(step))
        resume = f"the run resumes from {kept}" if kept else "no checkpoint from before it is left"
        raise DivergenceError(
            f"training diverged at step {step}: {reason} (lr {lr:.4g}; parts: "
            f"{', '.join(f'{k} {v:.4g}' for k, v in parts.items())}). Stopped; checkpoints from step "
            f"{DivergenceGuard.first_bad_step(step)} on were discarded (their weights may already be wrecked) and "
            f"{resume}. Lower the learning rate or check the data, then run again."
        )

    def run(self, start_step):
        """Runs the steps after `start_step` (from `restore`); returns the `TrainResult`."""
        config, run = self.config, self.run_dir
        run.truncate_metrics(start_step)
        logging.info(
            "%s %s: steps %d..%d (%d per epoch), %d replica(s), policy %s",
            "resuming" if start_step else "starting", config.workdir, start_step + 1, self.total_steps,
            self.steps_per_epoch, self.strategy.num_replicas_in_sync, self.policy,
        )
        train_step = make_train_step(
            self.strategy, self.model, self.optimizer, ignore_label=self.info.ignore_label,
            aux_weight=config.aux_weight, weight_decay=config.weight_decay, class_weights=self.class_weights,
            aux_resolution=config.aux_resolution, ohem_threshold=config.ohem_threshold,
            ohem_min_kept=config.ohem_min_kept,
        )
        progress = TrainProgress(start_step, self.total_steps, config.batch_size, config.progress and self.chief)
        step, last = start_step, self.total_steps
        batches = inputs.train_batches(self.strategy, config, self.steps_per_epoch, start_step, last)
        for step, batch in batches:
            parts = {name: float(value) for name, value in train_step(batch).items()}
            lr = float(self.schedule(step - 1))
            reason = self.guard.check(step, parts)
            if reason is not None:
                self.diverged(step, parts, lr, reason)
            progress.update(step, parts["loss"], parts["ce"], lr, finalize=step == last)
            if step % config.log_every == 0 or step == last:
                run.log(step, "train", {**parts, "lr": lr, "images_per_s": progress.images_per_second})
            if step == last:
                break
            # Validate before saving: the checkpoint then records this step's best score too.
            if config.eval_every > 0 and step % config.eval_every == 0:
                self.validate(step)
            if step % config.checkpoint_every == 0:
                self.save_checkpoint(step)
            if config.stop_at_step is not None and step >= config.stop_at_step:
                run.flush()
                return self._result(step, completed=False)
        if step > start_step or self.state.latest is None:
            self.validate(step)
            self.save_checkpoint(step)
        if self.chief:
            # The final model is built like the validation model (any input size, the package's model class with
            # its recipe) also when nothing was validated (eval_every < 0), not the crop-sized training graph.
            if self.validator is not None:
                final_model = self.validator.model
            else:
                with dtype_policy("float32"):
                    final_model = self.model_fn((None, None, 3), False)
            with optim.averaged_weights(self.optimizer, self.model.trainable_variables):
                copy_weights_by_name(self.infer_model, final_model)
            checkpoints.save_keras_model(final_model, run.path("final.keras"))
            if self.metrics is not None:
                run.write_json("val_metrics.json", self.metrics)
        run.flush()
        return self._result(step, completed=True)

    def _result(self, step, completed):
        best = float(self.state.best_miou.numpy())
        return TrainResult(
            workdir=self.config.workdir,
            step=int(step),
            total_steps=int(self.total_steps),
            metrics=self.metrics,
            best_miou=best if best >= 0 else None,
            best_step=int(self.state.best_step.numpy()),
            completed=completed,
            model=self.infer_model,
        )
