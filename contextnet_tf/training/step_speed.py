"""Training-speed benchmark: images/s of one training step (forward, losses, backward, optimiser update).

The step is the training loop's own (`loop.make_train_step`) with each network's paper recipe (optimiser,
auxiliary heads, L2), on a fixed in-memory batch, so the input pipeline is not measured (see the data module's
input benchmark for that). Writes ``benchmark_train.json`` and ``benchmark_train.md``.
"""

import json
import os
import statistics
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from contextnet_tf import data
from contextnet_tf.environment import describe, environment
from contextnet_tf.models import build_model
from contextnet_tf.training import batch_norm, losses, optim
from contextnet_tf.training.loop import dtype_policy, make_train_step
from contextnet_tf.training.presets import CONTEXTNET_PAPER, FAST_SCNN_PAPER


def recipe(model_name):
    """The paper preset of a network: Fast-SCNN's for ``fast_scnn``, ContextNet's for the others."""
    return FAST_SCNN_PAPER if model_name == "fast_scnn" else CONTEXTNET_PAPER


# Step settings compared side by side (`run(settings=...)`): the loss formulation, the batch norm's kernel and the
# auxiliary-loss resolution.
SETTINGS = {
    # The step before issue 18: one `masked_cross_entropy` per head (tf.nn.sparse_softmax_cross_entropy_with_logits),
    # Keras' batch norm.
    "before": dict(loss_implementation="reference", aux_resolution="input", fused_batch_norm=False),
    # The same mathematics, `softmax_cross_entropy_sum` with label terms shared by the heads; Keras' batch norm.
    "fast_loss": dict(loss_implementation="fast", aux_resolution="input", fused_batch_norm=False),
    # Today's default: the same mathematics, the fast loss and the fused batch norm (`batch_norm.fused_training`).
    "default": dict(loss_implementation="fast", aux_resolution="input", fused_batch_norm=True),
    # Option (a deviation from the papers): auxiliary losses at 1/8 resolution, with the default's loss and batch norm.
    "aux_eighth": dict(loss_implementation="fast", aux_resolution="eighth", fused_batch_norm=True),
}


def _model_and_optimizer(model_name, crop, policy, num_classes, aux):
    """A network at `crop` (with or without its auxiliary heads) and its paper recipe's built optimiser."""
    settings = recipe(model_name)
    with dtype_policy(policy):
        model = build_model(model_name, (*crop, 3), num_classes, aux=aux)
        optimizer = optim.make_optimizer(
            settings["optimizer"],
            optim.poly_schedule(settings["lr"], 10**6, settings["lr_power"]),
            settings["momentum"],
            loss_scale=policy == "mixed_float16",
        )
        optimizer.build(model.trainable_variables)
    return model, optimizer


def _build_step(model_name, crop, batch_size, policy, num_classes, setting):
    settings = recipe(model_name)
    model, optimizer = _model_and_optimizer(model_name, crop, policy, num_classes, settings["aux_weight"] > 0)
    step = make_train_step(
        tf.distribute.get_strategy(), model, optimizer, ignore_label=255, aux_weight=settings["aux_weight"],
        weight_decay=settings["weight_decay"], **SETTINGS[setting],
    )
    return model, step


def measure(model_name, crop, batch_size, steps=10, warmup=3, rounds=3, policy="float32", num_classes=None,
            settings=("default",)):
    """Times the training step of one network under each of `settings`, side by side.

    Every setting gets its own model and step (same seed, same batch); after the warm-up the rounds alternate
    between the settings, so a machine whose load changes slows them alike and their ratios stay meaningful.

    Args:
        model_name: a `build_model` name.
        crop: (height, width) of the training crops.
        batch_size: images per step.
        steps: timed steps per round.
        warmup: untimed steps first (the first one traces and compiles the step).
        rounds: timed rounds per setting; the median is reported.
        policy: Keras dtype policy (``float32``, ``mixed_float16``, ``mixed_bfloat16``).
        num_classes: classes of the logits (default: those of `data.PAPERS_DATASET`, the papers' Cityscapes).
        settings: names of `SETTINGS`; the first is the baseline of the ``speedup`` column.

    Returns:
        A list with one dict per setting: the setting, ``images_per_s`` per round, their ``median``, ``ms_per_step``,
        ``first_step_s`` and ``speedup`` (median over the first setting's median).
    """
    prepared = _Prepared(model_name, crop, batch_size, warmup, policy, num_classes, settings)
    per_round = {name: [] for name in settings}
    for _ in range(rounds):
        for name, value in prepared.round(steps).items():
            per_round[name].append(value)
    return _with_speedups(prepared.rows(per_round))


class _Prepared:
    """Every setting's model and traced step for one network, warmed up on one fixed batch."""

    def __init__(self, model_name, crop, batch_size, warmup, policy, num_classes, settings):
        unknown = [name for name in settings if name not in SETTINGS]
        if unknown:
            raise ValueError(f"unknown step setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
        self.model_name, self.crop, self.batch_size, self.policy = model_name, tuple(crop), batch_size, policy
        num_classes = num_classes or data.get_info(data.PAPERS_DATASET).num_classes
        self.batch = _random_batch(batch_size, crop, num_classes)
        self.built = {}
        # Seeded once: a later `set_random_seed` changes TensorFlow's global seed, which makes every traced step
        # retrace.
        keras.utils.set_random_seed(0)
        steps_of = {name: _build_step(model_name, crop, batch_size, policy, num_classes, name) for name in settings}
        for name, (model, step) in steps_of.items():
            start = time.perf_counter()
            float(step(self.batch)["loss"])
            first_step = time.perf_counter() - start
            for _ in range(max(0, warmup - 1)):
                float(step(self.batch)["loss"])
            self.built[name] = (model, step, first_step)

    def round(self, steps):
        """One timed round: {setting: images/s}, the settings one after the other."""
        result = {}
        for name, (_, step, _) in self.built.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = step(self.batch)["loss"]
            float(loss)  # waits for the last step
            result[name] = steps * self.batch_size / (time.perf_counter() - start)
        return result

    def rows(self, per_round, **extra):
        """One result dict per setting from its rounds' images/s (``speedup`` is added by `_with_speedups`)."""
        recipe_settings = recipe(self.model_name)
        results = []
        for name, (model, _, first_step) in self.built.items():
            median = statistics.median(per_round[name])
            results.append(dict(
                model=self.model_name,
                setting=name,
                **extra,
                **SETTINGS[name],
                optimizer=recipe_settings["optimizer"],
                aux_heads=[k for k in model.output if k != "logits"] if isinstance(model.output, dict) else [],
                crop=list(self.crop),
                batch_size=self.batch_size,
                policy=self.policy,
                params=int(sum(np.prod(v.shape) for v in model.trainable_variables)),
                first_step_s=round(first_step, 2),
                images_per_s=[round(v, 2) for v in per_round[name]],
                median=round(median, 2),
                ms_per_step=round(1000 * self.batch_size / median, 1),
            ))
        return results


def _random_batch(batch_size, crop, num_classes):
    """The benchmarks' fixed batch: uniform random images and labels (seed 0)."""
    rng = np.random.default_rng(0)
    return (
        tf.constant(rng.uniform(0, 255, (batch_size, *crop, 3)).astype(np.float32)),
        tf.constant(rng.integers(0, num_classes, (batch_size, *crop)).astype(np.int32)),
    )


def _with_speedups(rows):
    baseline = rows[0]["median"]
    for row in rows:
        row["speedup"] = round(row["median"] / baseline, 3)
    return rows


# Process environments compared side by side (`measure_environments`): variables read when TensorFlow is imported,
# so each runs in its own worker process.
ENVIRONMENTS = {
    # TensorFlow's CPU kernels through oneDNN, or its own (Eigen) kernels. TensorFlow's default depends on the CPU
    # (off on this project's AMD EPYC machine); importing `contextnet_tf` first sets it on unless it is set.
    "onednn_off": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "onednn_on": {"TF_ENABLE_ONEDNN_OPTS": "1"},
}
_PROTOCOL = "STEP_SPEED "  # prefix of the worker's protocol lines on its stdout


def measure_environments(model_name, crop, batch_size, environments, steps=10, warmup=3, rounds=3, policy="float32",
                         settings=("default",)):
    """`measure` across process environments (`ENVIRONMENTS`): one worker process per environment builds and warms
    up every setting's step, then the rounds alternate between the workers (and, within a worker, between the
    settings), so a change of load slows them alike.

    Returns:
        One row per environment and setting (``environment``, ``env``, ``onednn`` as the worker's TensorFlow
        reports it, and `measure`'s fields); ``speedup`` is against the first environment's first setting.
    """
    import subprocess
    import sys

    unknown = [name for name in environments if name not in ENVIRONMENTS]
    if unknown:
        raise ValueError(f"unknown environment(s) {unknown}; choose from {', '.join(ENVIRONMENTS)}")
    spec = dict(model_name=model_name, crop=list(crop), batch_size=batch_size, warmup=warmup, policy=policy,
                settings=list(settings), steps=steps)
    workers = {}
    try:
        for name in environments:
            workers[name] = subprocess.Popen(
                [sys.executable, "-m", "contextnet_tf.training.step_speed", json.dumps(spec)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                env={**os.environ, **ENVIRONMENTS[name]})
        ready = {name: _reply(worker, name) for name, worker in workers.items()}
        per_round = {name: {setting: [] for setting in settings} for name in environments}
        for _ in range(rounds):
            for name, worker in workers.items():
                worker.stdin.write("round\n")
                worker.stdin.flush()
                for setting, value in _reply(worker, name)["round"].items():
                    per_round[name][setting].append(value)
        rows = []
        for name, worker in workers.items():
            worker.stdin.write("rows " + json.dumps(per_round[name]) + "\n")
            worker.stdin.flush()
            for row in _reply(worker, name)["rows"]:
                rows.append(dict(row, environment=name, env=ENVIRONMENTS[name], onednn=ready[name]["onednn"]))
        return _with_speedups(rows)
    finally:
        for worker in workers.values():
            if worker.poll() is None:
                worker.stdin.close()
                worker.wait(timeout=60)


def _reply(worker, name):
    for line in worker.stdout:
        if line.startswith(_PROTOCOL):
            return json.loads(line[len(_PROTOCOL):])
    raise RuntimeError(f"the {name} benchmark worker ended without a reply (exit status {worker.wait()}); "
                       "its error is above")


def _worker(spec):
    """The worker of `measure_environments`: prepares the steps, then answers ``round`` and ``rows`` lines."""
    from contextnet_tf.environment import onednn_enabled

    prepared = _Prepared(spec["model_name"], spec["crop"], spec["batch_size"], spec["warmup"], spec["policy"], None,
                         spec["settings"])

    def say(value):
        print(_PROTOCOL + json.dumps(value), flush=True)

    say(dict(onednn=onednn_enabled()))
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        if command == "round":
            say(dict(round=prepared.round(spec["steps"])))
        elif command == "rows":
            say(dict(rows=prepared.rows(json.loads(argument))))


def breakdown(model_name, crop, batch_size, steps=5, warmup=2, rounds=3, num_classes=None):
    """Where the time of one training step goes, by ablation: each row is a `tf.function` doing a prefix of the
    step (or the step without one part), timed side by side with the others in alternating rounds.

    Rows: ``forward`` (training mode: batch statistics, dropout), ``forward (inference mode)``, ``forward + losses``
    (all heads' upsampled cross-entropies and the L2 term), ``forward + losses + backward`` (the gradients), ``step``
    (the training loop's own, with the optimiser update), ``step without L2``, ``step without auxiliary heads`` (the
    network built with ``aux=False``) and ``step, auxiliary losses at 1/8`` (the ``aux_eighth`` option). Each row
    gives the median ms per step and its share of ``step``; differences between rows are the parts' costs.
    """
    settings = recipe(model_name)
    num_classes = num_classes or data.get_info(data.PAPERS_DATASET).num_classes
    images, labels = _random_batch(batch_size, crop, num_classes)
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.get_strategy()

    def build(aux):
        return _model_and_optimizer(model_name, crop, "float32", num_classes, aux)

    model, optimizer = build(settings["aux_weight"] > 0)
    l2_variables = losses.l2_regularized_variables(model)

    def loss_of(outputs):
        return losses.segmentation_losses(outputs, labels, aux_weight=settings["aux_weight"],
                                          l2_variables=l2_variables, weight_decay=settings["weight_decay"])["loss"]

    # The training-mode rows use the default step's fused batch norm (inference mode is Keras' own either way).
    @tf.function
    def forward():
        with batch_norm.fused_training(model):
            return tf.nest.flatten(model(images, training=True))[0][0, 0, 0, 0]

    @tf.function
    def forward_inference():
        return tf.nest.flatten(model(images, training=False))[0][0, 0, 0, 0]

    @tf.function
    def forward_losses():
        with batch_norm.fused_training(model):
            return loss_of(model(images, training=True))

    @tf.function
    def forward_losses_backward():
        with tf.GradientTape() as tape, batch_norm.fused_training(model):
            loss = loss_of(model(images, training=True))
        return tf.add_n([tf.reduce_sum(g) for g in tape.gradient(loss, model.trainable_variables)])

    def train_step(model, optimizer, **kwargs):
        step = make_train_step(strategy, model, optimizer, ignore_label=255, aux_weight=settings["aux_weight"],
                               **{"weight_decay": settings["weight_decay"], **kwargs})
        return lambda: step((images, labels))["loss"]

    plain_model, plain_optimizer = build(False)
    variants = {
        "forward": forward,
        "forward (inference mode)": forward_inference,
        "forward + losses": forward_losses,
        "forward + losses + backward": forward_losses_backward,
        "step": train_step(model, optimizer),
        "step without L2": train_step(model, optimizer, weight_decay=0.0),
        "step without auxiliary heads": train_step(plain_model, plain_optimizer),
        "step, auxiliary losses at 1/8": train_step(model, optimizer, aux_resolution="eighth"),
    }
    for function in variants.values():
        for _ in range(warmup):
            float(function())
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, function in variants.items():
            start = time.perf_counter()
            for _ in range(steps):
                value = function()
            float(value)
            times[name].append(1000 * (time.perf_counter() - start) / steps)
    step_ms = statistics.median(times["step"])
    return [dict(model=model_name, part=name, crop=list(crop), batch_size=batch_size,
                 ms=round(statistics.median(values), 1), rounds_ms=[round(v, 1) for v in values],
                 share_of_step=round(statistics.median(values) / step_ms, 3))
            for name, values in times.items()]


# Op categories of `profile`, by the op's name (the layer that made it) and then its type; first match wins.
PROFILE_CATEGORIES = (
    ("batch norm", lambda op, kind: "_bn" in op or kind.startswith("FusedBatchNorm")),
    ("depthwise convolution", lambda op, kind: kind.startswith("DepthwiseConv2d")),
    ("convolution", lambda op, kind: kind.startswith(("Conv2D", "_FusedConv2D", "BiasAdd"))),
    ("upsampling (resize)", lambda op, kind: kind.startswith("ResizeBilinear")),
    ("optimiser update", lambda op, kind: kind.startswith(("ResourceApply", "AssignVariable", "AssignAdd",
                                                           "AssignSub")) or "optimizer" in op.lower()),
    ("activations", lambda op, kind: kind.startswith(("Relu", "Relu6"))),
    # Top-level ops (no layer in their name): the cross-entropies, label terms and the L2 term.
    ("losses and L2", lambda op, kind: "/" not in op.replace("gradient_tape/", "", 1)),
)
_PROFILER_FRAMES = ("ExecutorState", "EagerLocalExecute", "KernelAndDevice", "ThreadpoolListener", "__inference")


def profile(model_name, crop, batch_size, steps=5, warmup=3, setting="default", num_classes=None, log_dir=None):
    """Where a training step's time goes, by TensorFlow's profiler: the op time of `steps` default steps, summed
    by category (`PROFILE_CATEGORIES`) and by forward pass vs gradient.

    The profiler records every op a step runs (ms per step, summed over the threads that ran them, so the total
    exceeds the step's wall time on several cores); it adds a cost per op, which inflates categories made of many
    small ops (Keras' batch norm) compared with a run without it. Read shares, not absolute times.

    Returns:
        A dict: ``wall_ms`` (per step, profiled), ``op_ms`` (the ops' total), ``rows`` (category, ``forward`` or
        ``gradient``, ms per step, share of ``op_ms``, op count per step) sorted by time, and ``op_types`` (ms per
        step by op type, most expensive first).
    """
    import collections
    import glob
    import tempfile

    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    if setting not in SETTINGS:
        raise ValueError(f"unknown step setting {setting!r} to profile; choose from {', '.join(SETTINGS)}")
    prepared = _Prepared(model_name, crop, batch_size, warmup, "float32", num_classes, (setting,))
    step, batch = prepared.built[setting][1], prepared.batch
    log_dir = log_dir or tempfile.mkdtemp(prefix="step_profile_")
    tf.profiler.experimental.start(log_dir)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(batch)["loss"]
    float(loss)
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    paths = glob.glob(os.path.join(log_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise RuntimeError(f"the TensorFlow profiler wrote no trace under {log_dir}")
    space = xplane_pb2.XSpace()
    with open(max(paths, key=os.path.getmtime), "rb") as f:
        space.ParseFromString(f.read())
    by_category, counts, by_type = collections.Counter(), collections.Counter(), collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" not in name or name.startswith(_PROFILER_FRAMES):
                    continue
                op, kind = name.rsplit(":", 1)
                if kind.startswith("__inference"):
                    continue
                # oneDNN's kernels are TensorFlow's op types with a prefix (_MklNativeConv2D, _MklSoftmax).
                plain = kind.removeprefix("_MklNative").removeprefix("_Mkl")
                category = next((c for c, match in PROFILE_CATEGORIES if match(op, plain)), "other")
                key = (category, "gradient" if op.startswith("gradient_tape/") else "forward")
                ms = event.duration_ps / 1e9 / steps
                by_category[key] += ms
                counts[key] += 1
                by_type[kind] += ms
    total = sum(by_category.values())
    rows = [dict(model=model_name, setting=setting, category=c, part=part, ms=round(ms, 1),
                 share=round(ms / total, 3), ops_per_step=counts[(c, part)] // steps)
            for (c, part), ms in by_category.most_common()]
    return dict(model=model_name, setting=setting, crop=list(crop), batch_size=batch_size, steps=steps,
                wall_ms=round(1000 * wall / steps, 1), op_ms=round(total, 1), rows=rows,
                op_types=[dict(op_type=k, ms=round(v, 1)) for k, v in by_type.most_common()])


def profile_markdown(profiles):
    """`profile` results as one markdown table (categories under 1% of a step's op time are left out)."""
    lines = ["| model | setting | category | forward / gradient | ms per step (op time) | share of op time | ops |",
             "|---|---|---|---|---|---|---|"]
    for p in profiles:
        for r in p["rows"]:
            if r["share"] >= 0.01:
                lines.append(f"| {r['model']} | {r['setting']} | {r['category']} | {r['part']} | {r['ms']:.0f} | "
                             f"{100 * r['share']:.0f}% | {r['ops_per_step']} |")
    notes = "; ".join(f"{p['model']} {p['setting']}: {p['wall_ms']:.0f} ms/step profiled, {p['op_ms']:.0f} ms of op "
                      "time" for p in profiles)
    return "\n".join(lines) + f"\n\n({notes}.)\n"


def breakdown_markdown(rows):
    """`breakdown` rows as a markdown table."""
    lines = ["| model | part of the step | ms (median) | share of the step | rounds (ms) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['part']} | {r['ms']:.0f} | {100 * r['share_of_step']:.0f}% | "
                     f"{', '.join(f'{v:.0f}' for v in r['rounds_ms'])} |")
    return "\n".join(lines) + "\n"


def run(models, out_dir, crop=(256, 512), batch_size=4, steps=10, warmup=3, rounds=3, policy="float32", command="",
        settings=("default",), with_breakdown=False, profile_settings=(), environments=()):
    """Measures every network under each setting (and, with `environments`, in each process environment:
    `measure_environments`), writes benchmark_train.json and benchmark_train.md to `out_dir`, returns the dict."""
    machine = environment()
    machine["load_average_before"] = machine.pop("load_average")
    rows = []
    for name in models:
        if environments:
            rows += measure_environments(name, crop, batch_size, list(environments), steps, warmup, rounds, policy,
                                         settings=tuple(settings))
        else:
            rows += measure(name, crop, batch_size, steps, warmup, rounds, policy, settings=tuple(settings))
    result = dict(command=command, machine=machine, settings=list(settings), environments=list(environments),
                  results=rows)
    if with_breakdown:
        result["breakdown"] = []
        for name in models:
            result["breakdown"] += breakdown(name, crop, batch_size, steps=steps, rounds=rounds)
    if profile_settings:
        result["profile"] = [profile(name, crop, batch_size, steps=steps, setting=setting)
                             for name in models for setting in profile_settings]
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
        "| model | process | step setting | optimiser | aux heads | crop | batch | policy | images/s (median) | "
        "per round | ms/step | vs first row | first step (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["results"]:
        rounds = ", ".join(f"{v:.1f}" for v in r["images_per_s"])
        process = r.get("environment", "this one")
        lines.append(
            f"| {r['model']} | {process} | {r.get('setting', 'default')} | {r['optimizer']} | {len(r['aux_heads'])} | "
            f"{r['crop'][0]}x{r['crop'][1]} | {r['batch_size']} | {r['policy']} | {r['median']:.1f} | {rounds} | "
            f"{r['ms_per_step']:.0f} | {r.get('speedup', 1.0):.2f}x | {r['first_step_s']:.1f} |"
        )
    if result.get("breakdown"):
        lines += ["", "Where the time of the default step goes (ablation, side by side):", "",
                  breakdown_markdown(result["breakdown"]).rstrip("\n")]
    if result.get("profile"):
        lines += ["", "Op time by category (TensorFlow's profiler; shares, see `step_speed.profile`):", "",
                  profile_markdown(result["profile"]).rstrip("\n")]
    if result["command"]:
        lines += ["", f"Command: `{result['command']}`"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    _worker(json.loads(sys.argv[1]))
