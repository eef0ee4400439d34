"""Weight averaging of a run's checkpoints (a stochastic-weight-averaging-style lever without retraining).

    python experiments/average_checkpoints.py --run=runs/sel_fs --last=3 --output=runs/sel_fs/averaged.keras

`average_checkpoints` restores each chosen checkpoint of a run folder (``checkpoints/ckpt-{step}``, the ones
`training.checkpoints.RunCheckpoints` keeps: ``--keep_checkpoints`` of them, every ``--checkpoint_every`` steps) into
the run's training model, takes the element-wise mean of every floating-point weight (batch-norm moving means and
variances included, so no statistics are recomputed: with the small learning rates at the end of a poly schedule
the averaged weights stay close to each checkpoint's, which is the regime where the averaged statistics are a fair
stand-in), and saves the inference model like the run's own ``final.keras`` (any input size, the run's input scale).
Non-float state (dropout random-generator counters) is taken from the newest checkpoint.

Averaging is not part of either paper. Measured on CamVid held-out sequence 0006R0 in docs/data.md
("CamVid held-out-sequence runs").
"""

import json
import logging
import os

import numpy as np
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.models import copy_weights_by_name
from contextnet_tf.training import checkpoints
from contextnet_tf.training.loop import config_model_fn
from contextnet_tf.training.run_dir import RunDir


def choose_checkpoints(run_dir, last=None, steps=None):
    """Paths of the checkpoints to average: those of `steps` (each must exist), else the `last` newest ones."""
    directory = os.path.join(run_dir, "checkpoints")
    available = checkpoints.list_checkpoints(directory)
    if not available:
        raise FileNotFoundError(f"{run_dir}: no checkpoints in {directory}")
    by_step = {checkpoints.checkpoint_step(path): path for path in available}
    if steps:
        missing = [step for step in steps if step not in by_step]
        if missing:
            raise ValueError(f"{run_dir}: no checkpoint of step(s) {', '.join(map(str, missing))}; it has "
                             f"{', '.join(map(str, sorted(by_step)))}")
        return [by_step[step] for step in sorted(set(steps))]
    if last is None or last < 1:
        raise ValueError(f"last must be a positive number of checkpoints, got {last!r}")
    if last > len(available):
        raise ValueError(f"{run_dir}: {last} checkpoints asked for, it keeps {len(available)} "
                         f"(steps {', '.join(map(str, sorted(by_step)))})")
    return available[-last:]


def average_checkpoints(run_dir, output, last=3, steps=None, log=print):
    """Averages checkpoints of a run (`choose_checkpoints`) and saves the inference model to `output` (``.keras``),
    with the averaged steps in ``{output stem}.averaging.json`` beside it.

    Returns:
        the averaged steps (list of int).
    """
    run = RunDir(run_dir, chief=False)
    config = run.recorded_config()  # the settings in force when the checkpoints were written
    if config is None:
        raise FileNotFoundError(f"{run_dir} is not a training run folder: {run.config_path} is missing")
    chosen = choose_checkpoints(run_dir, last=last, steps=steps)
    make = config_model_fn(config, data.get_info(config.dataset))
    model = make((*config.crop, 3), config.aux_weight > 0)
    state = tf.train.Checkpoint(model=model)
    floats = [v for v in model.weights if np.dtype(v.dtype).kind == "f"]
    sums = [np.zeros(v.shape, np.float64) for v in floats]
    for checkpoint in chosen:
        state.restore(checkpoint).expect_partial().assert_existing_objects_matched()
        for total, variable in zip(sums, floats):
            total += np.asarray(variable.numpy(), np.float64)
        log(f"read {checkpoint}")
    for total, variable in zip(sums, floats):  # the newest checkpoint's non-float state stays
        variable.assign((total / len(chosen)).astype(np.dtype(variable.dtype)))
    final = make((None, None, 3), False)
    copy_weights_by_name(checkpoints.inference_model(model), final)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    checkpoints.save_keras_model(final, output)
    averaged = [checkpoints.checkpoint_step(c) for c in chosen]
    with open(f"{os.path.splitext(output)[0]}.averaging.json", "w") as f:
        json.dump({"run": run_dir, "averaged_steps": averaged}, f, indent=2)
    logging.info("averaged steps %s of %s into %s", averaged, run_dir, output)
    log(f"wrote {output} (mean of steps {', '.join(map(str, averaged))})")
    return averaged
