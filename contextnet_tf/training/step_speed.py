"""Training-speed benchmark: images/s of one training step (forward, losses, backward, optimiser update).

The step is the training loop's own (`loop.make_train_step`) with each network's paper recipe (optimiser,
auxiliary heads, L2), on a fixed in-memory batch, so the input pipeline is not measured (see the data module's
input benchmark for that). Writes ``benchmark_train.json`` and ``benchmark_train.md``.
"""

import json
import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.environment import describe, environment
from contextnet_tf.models import build_model
from contextnet_tf.training import optim
from contextnet_tf.training.loop import dtype_policy, make_train_step
from contextnet_tf.training.presets import CONTEXTNET_PAPER, FAST_SCNN_PAPER


def recipe(model_name):
    """The paper preset of a network: Fast-SCNN's for ``fast_scnn``, ContextNet's for the others."""
    return FAST_SCNN_PAPER if model_name == "fast_scnn" else CONTEXTNET_PAPER


def measure(model_name, crop, batch_size, steps=10, warmup=3, rounds=3, policy="float32", num_classes=None):
    """Times the training step of one network.

    Args:
        model_name: a `build_model` name.
        crop: (height, width) of the training crops.
        batch_size: images per step.
        steps: timed steps per round.
        warmup: untimed steps first (the first one traces and compiles the step).
        rounds: timed rounds; the median is reported.
        policy: Keras dtype policy (``float32``, ``mixed_float16``, ``mixed_bfloat16``).
        num_classes: classes of the logits (default: those of `data.PAPERS_DATASET`, the papers' Cityscapes).

    Returns:
        Dict with the setting, ``images_per_s`` per round, their ``median``, ``ms_per_step`` and ``first_step_s``.
    """
    settings = recipe(model_name)
    num_classes = num_classes or data.get_info(data.PAPERS_DATASET).num_classes
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()
    with dtype_policy(policy):
        model = build_model(model_name, (*crop, 3), num_classes, aux=settings["aux_weight"] > 0)
        optimizer = optim.make_optimizer(
            settings["optimizer"],
            optim.poly_schedule(settings["lr"], 10**6, settings["lr_power"]),
            settings["momentum"],
            loss_scale=policy == "mixed_float16",
        )
        optimizer.build(model.trainable_variables)
    step = make_train_step(
        strategy, model, optimizer, ignore_label=255, aux_weight=settings["aux_weight"],
        weight_decay=settings["weight_decay"],
    )
    rng = np.random.default_rng(0)
    batch = (
        tf.constant(rng.uniform(0, 255, (batch_size, *crop, 3)).astype(np.float32)),
        tf.constant(rng.integers(0, num_classes, (batch_size, *crop)).astype(np.int32)),
    )
    start = time.perf_counter()
    float(step(batch)["loss"])
    first_step = time.perf_counter() - start
    for _ in range(max(0, warmup - 1)):
        float(step(batch)["loss"])
    per_round = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            loss = step(batch)["loss"]
        float(loss)  # waits for the last step
        per_round.append(steps * batch_size / (time.perf_counter() - start))
    median = statistics.median(per_round)
    return dict(
        model=model_name,
        optimizer=settings["optimizer"],
        aux_heads=[k for k in model.output if k != "logits"] if isinstance(model.output, dict) else [],
        crop=list(crop),
        batch_size=batch_size,
        policy=policy,
        params=int(sum(np.prod(v.shape) for v in model.trainable_variables)),
        first_step_s=round(first_step, 2),
        images_per_s=[round(v, 2) for v in per_round],
        median=round(median, 2),
        ms_per_step=round(1000 * batch_size / median, 1),
    )


def run(models, out_dir, crop=(256, 512), batch_size=4, steps=10, warmup=3, rounds=3, policy="float32", command=""):
    """Measures every network, writes benchmark_train.json and benchmark_train.md to `out_dir`, returns the dict."""
    machine = environment()
    machine["load_average_before"] = machine.pop("load_average")
    result = dict(
        command=command,
        machine=machine,
        results=[measure(m, crop, batch_size, steps, warmup, rounds, policy) for m in models],
    )
    result["machine"]["load_average_after"] = list(os.getloadavg())
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "benchmark_train.json"), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(out_dir, "benchmark_train.md"), "w") as f:
        f.write(markdown(result))
    return result


def markdown(result):
    """The result of `run` as a markdown table."""
    machine = result["machine"]
    device = describe(machine)
    lines = [
        f"Training step (forward, losses, backward, update) on {device}; "
        f"load average {machine['load_average_before'][0]:.2f} before, {machine['load_average_after'][0]:.2f} after.",
        "",
        "| model | optimiser | aux heads | crop | batch | policy | images/s (median) | per round | ms/step | "
        "first step (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        rounds = ", ".join(f"{v:.1f}" for v in r["images_per_s"])
        lines.append(
            f"| {r['model']} | {r['optimizer']} | {len(r['aux_heads'])} | {r['crop'][0]}x{r['crop'][1]} | "
            f"{r['batch_size']} | {r['policy']} | {r['median']:.1f} | {rounds} | {r['ms_per_step']:.0f} | "
            f"{r['first_step_s']:.1f} |"
        )
    if result["command"]:
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"
