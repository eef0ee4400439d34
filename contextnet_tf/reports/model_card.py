"""Publishing a trained run as a pretrained model: the ``.keras`` file, its evaluation and a model card.

    python experiments/model_card.py --run=runs/fast_scnn_camvid --name=fast_scnn_camvid --out_dir=pretrained \
        --data_dir=../shared/data/camvid --input_scale=2 --eval_flip --eval_scales=1.5,2,2.5

`publish` reads a run folder (`contextnet_tf.training` layout: ``config.json``, ``metrics.jsonl``, TensorBoard events,
``final.keras`` / ``best.keras``), evaluates the chosen weights on the validation split (plain, and with the
test-time augmentation given), and writes into `out_dir`:

* ``{name}.keras``: the inference model (logits only, float32), loadable by `experiments/evaluate.py`,
  `experiments/predict.py`, `experiments/export.py` and `contextnet_tf.load_model` (it carries its classes,
  palette and input scale);
* ``{name}.md``: the model card: data, the exact training command, recipe, steps, wall time and hardware, val mIoU
  with the per-class table, the evaluation command, how to use it, limits; for a run resumed with changed settings
  (``--allow_changes``: the run's ``config_changes.jsonl``), which setting changed from what to what at which step,
  and the command of each resumption;
* ``{name}.json``: the evaluation metrics (`contextnet_tf.evaluation.metrics` format, both settings);
* ``{name}_curve.png``: the training curve (train loss, val mIoU during training).

A run initialised from another run's ``final.keras`` (``--init_from``) is that run's next stage (`stages`): the card
gives every stage's command, their summed wall time and one curve over all of them. With a selection run, both are
checked stage by stage (`stage_differences`). With `speed_report` (an `experiments/benchmark.py` JSON of the same
network) the card gets a *Speed* section with the benchmark's rows and command.
"""

import dataclasses
import json
import os
import shlex
import tempfile
import typing

import tensorflow as tf

from contextnet_tf import cli, data
from contextnet_tf.deploy.speed import NOISE
from contextnet_tf.evaluation import metrics as evaluation
from contextnet_tf.models import load_model
from contextnet_tf.models.profiling import count_trainable_params
from contextnet_tf.environment import describe, environment
from contextnet_tf.training.run_dir import RESULT_FIELDS, training_wall_time
from contextnet_tf.reports.plots import plot_training_curve
from contextnet_tf.reports.tables import iou_table
from contextnet_tf.training import TrainConfig
from contextnet_tf.training import config as config_lib
from contextnet_tf.training.run_dir import RunDir


def read_config(run_dir):
    """The run's resolved `TrainConfig` (from ``config.json``), with a clear error for a folder that is not a run."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir} is not a training run folder: {path} is missing")
    with open(path) as f:
        return TrainConfig.from_json(f.read())


def train_command(config):
    """The `experiments/train.py` command line that reproduces `config` (`training.config.command_args`: the
    preset plus every field that differs from it; booleans as ``--flag`` / ``--noflag``)."""
    args = [shlex.quote(arg) for arg in config_lib.command_args(config)]
    return " \\\n    ".join(["python experiments/train.py", *args])


def read_config_changes(run_dir):
    """The records of the run's ``config_changes.jsonl`` (settings changed on resume with ``--allow_changes``), oldest
    first: ``[{"step", "changes": {name: {"from", "to"}}, "time"}]``; empty for a run trained as it started."""
    return RunDir(run_dir, chief=False).config_changes()


def config_after(config, records):
    """`config` with the changes of `records` (`read_config_changes`) applied: the settings in force after them."""
    fields = json.loads(config.to_json())
    for record in records:
        fields.update({name: change["to"] for name, change in record["changes"].items()})
    return TrainConfig(**fields)


def _flag_text(name, value):
    field = {f.name: f for f in dataclasses.fields(TrainConfig)}[name]
    return "unset" if value is None else cli.flag_text(value, field.metadata.get("syntax"))


def changes_section(config, records):
    """The card's markdown for a run resumed with changed settings: a table of each change (step, setting, from, to)
    and the command of each resumption; '' for a run without changes."""
    if not records:
        return ""
    rows = [
        f"| {record['step']} | `{name}` | {_flag_text(name, change['from'])} | {_flag_text(name, change['to'])} |"
        for record in records
        for name, change in record["changes"].items()
    ]
    commands = []
    for index, record in enumerate(records):
        resumed = dataclasses.replace(config_after(config, records[: index + 1]), allow_changes=True)
        commands.append(f"# resumed after step {record['step']}\n{train_command(resumed)}")
    newline = "\n"
    return f"""## Settings changed during the run

The run was resumed with `--allow_changes` and other settings ({len(records)} time{"s" if len(records) > 1 else ""},
recorded in the run's `config_changes.jsonl`). Each change took effect after the step shown: the steps up to it were
trained with the settings before it.

| step | setting | from | to |
|---|---|---|---|
{newline.join(rows)}

```bash
{(newline * 2).join(commands)}
```
"""


def _extras(config):
    """The recipe's departures from the papers' loss, batches and initialisation, for the card's training row."""
    parts = []
    if config.class_weighting != "none":
        parts.append(f"{config.class_weighting} class weighting (run's class_weights.json)")
    if config.ohem_threshold is not None:
        parts.append(f"hard-example mining of the main loss (true-class probability < {config.ohem_threshold:g}, "
                     f"at least {config.ohem_min_kept} pixels per image)")
    if config.cutmix:
        parts.append(f"CutMix of the batches (probability {config.cutmix:g})")
    if config.classmix:
        parts.append(f"ClassMix of the batches (probability {config.classmix:g})")
    if config.ema_momentum is not None:
        parts.append(f"weights: moving average of momentum {config.ema_momentum:g}")
    if config.init_from:
        parts.append(f"initialised from `{config.init_from}`")
    return "".join(f"; {part}" for part in parts)


# The recipe a selection run and the run it chose for must share: every setting that changes what a run trains
# (`run_dir.RESULT_FIELDS`) except which frames it trains and validates on and how validation runs, plus the
# execution settings a resumed run may change but two separate runs must not (distribution strategy, op determinism).
SELECTION_SPLIT_FIELDS = ("train_split", "val_split", "holdout_sequence", "eval_flip", "eval_scales", "eval_max_images")
RECIPE_FIELDS = tuple(name for name in RESULT_FIELDS if name not in SELECTION_SPLIT_FIELDS) + (
    "strategy", "deterministic_ops")


def recipe_differences(selection, final):
    """``{field: (selection value, final value)}`` for the `RECIPE_FIELDS` in which two runs differ: empty when
    `final` trains the recipe `selection` measured."""
    first, second = json.loads(selection.to_json()), json.loads(final.to_json())
    return {name: (first[name], second[name]) for name in RECIPE_FIELDS if first[name] != second[name]}


def earlier_stage(config):
    """The run folder a run continues, or None: the folder of its `init_from` file when that folder is a training
    run (it holds ``config.json``); None for a run from scratch or one initialised from a file no run folder holds."""
    if not config.init_from:
        return None
    folder = os.path.dirname(config.init_from) or "."
    return folder if os.path.exists(os.path.join(folder, "config.json")) else None


class Stage(typing.NamedTuple):
    """One run of a staged schedule (`stages`), its record read once: the folder, the settings it started with
    (``config.json``: what its command reproduces), its ``config_changes.jsonl`` records (`read_config_changes`) and
    the settings in force at its end (`config_after`: what its weights were trained with last)."""

    run_dir: str
    started: TrainConfig
    changes: list
    settings: TrainConfig


def stages(run_dir):
    """``[Stage]`` of a run and the runs it continues (`earlier_stage`, followed back), first stage first; each
    run's record is read once."""
    chain, seen = [], set()
    while run_dir:
        key = os.path.realpath(run_dir)
        if key in seen:
            raise ValueError(f"{run_dir}: the runs' --init_from files form a loop")
        seen.add(key)
        config = read_config(run_dir)
        changes = read_config_changes(run_dir)
        chain.append(Stage(run_dir, config, changes, config_after(config, changes)))
        run_dir = earlier_stage(config)
    return chain[::-1]


def stage_differences(selection_run, final_run):
    """{field: (selection value, final value)} over every stage of two staged run folders: `chain_differences` of
    their `stages`. Empty when `final_run` trains, stage by stage, the recipe `selection_run` measured."""
    return chain_differences(stages(selection_run), stages(final_run))


def chain_differences(selection_chain, final_chain):
    """{field: (selection value, final value)} over two `stages` lists: the number of stages, and each pair of
    stages' `recipe_differences` (named ``stage N: field`` but for the last stage); where both stages continue an
    earlier stage, only which checkpoint file they continue from must agree."""
    if len(selection_chain) != len(final_chain):
        return {"stages": (len(selection_chain), len(final_chain))}
    differences = {}
    for index, (selection, final) in enumerate(
            zip((stage.settings for stage in selection_chain), (stage.settings for stage in final_chain))):
        found = recipe_differences(selection, final)
        if index > 0 and "init_from" in found:  # each continues its own chain's previous stage
            del found["init_from"]
            first, second = os.path.basename(selection.init_from), os.path.basename(final.init_from)
            if first != second:
                found["init_from"] = (first, second)
        prefix = "" if index == len(final_chain) - 1 else f"stage {index + 1}: "
        differences.update({prefix + name: pair for name, pair in found.items()})
    return differences


def _check_selection(selection_chain, chain):
    """Raises ValueError unless the selection run (the last of `selection_chain`, its `stages`, with each stage it
    continues) measured the recipe of the run that ends `chain` on frames that run trained on and its own validation
    split never trained on."""
    selection_run, run_dir = selection_chain[-1].run_dir, chain[-1].run_dir
    selection = selection_chain[-1].settings
    config = chain[-1].started
    for stage in selection_chain:
        if stage.changes:
            raise ValueError(f"selection run {stage.run_dir} was resumed with changed settings: its recipe is not "
                             "one command")
        if stage.settings.train_split != selection.train_split:
            raise ValueError(f"selection run {selection_run} continues {stage.run_dir}, which trained on "
                             f"{stage.settings.train_split!r}, not {selection.train_split!r}: it may have seen "
                             f"{selection.val_split!r}")
    differences = chain_differences(selection_chain, chain)
    if differences:
        listed = ", ".join(f"{key}: {a!r} (selection) vs {b!r}" for key, (a, b) in sorted(differences.items()))
        raise ValueError(f"{run_dir} does not train the recipe its selection run {selection_run} measured: "
                         f"{listed}")
    if selection.train_split == config.train_split:
        raise ValueError(f"selection run {selection_run} trained on the same split as {run_dir} "
                         f"({config.train_split!r}): it holds nothing out")
    return selection


def _stacked_metrics(chain, path):
    """Writes the ``metrics.jsonl`` records of a staged run's stages into `path`, each stage's steps counted on from
    the previous stage's end (one curve for the whole schedule); returns the total steps."""
    offset = 0
    with open(path, "w") as out:
        for stage in chain:
            with open(os.path.join(stage.run_dir, "metrics.jsonl")) as f:
                for line in f:
                    if line.strip():
                        record = json.loads(line)
                        record["step"] = record.get("step", 0) + offset
                        out.write(json.dumps(record) + "\n")
            offset += _stage_steps(stage.settings)
    return offset


def _stage_steps(settings):
    return settings.total_steps(len(data.list_examples(settings.dataset, settings.data_dir, settings.train_split)))


def speed_section(report, model):
    """The card's *Speed* section from an `experiments/benchmark.py` JSON report of this model's network.

    The report must time a ``.keras`` file of the same architecture: the same model class, variant config and
    input scale, else a ValueError says what differs. (Weights change the cost of the ``cls`` head's last mile
    alone, which interpolates the cells near class boundaries of the prediction on the timed frame: on noise,
    two weight files of one network timed 10% apart, on a real frame alike; time the published file on a real
    frame, ``benchmark.py --image``.) The section gives every timed row, the frame (with the share of boundary cells
    the report recorded), the machine and its load when the benchmark started, and the command (recorded in the
    report)."""
    source = report.get("model")
    if not source or not str(source).endswith(".keras") or not os.path.exists(source):
        raise ValueError(f"the benchmark report times {source!r}: it must time a .keras file that still exists "
                         "(experiments/benchmark.py --model=RUN/final.keras)")
    timed = load_model(source)
    if timed.get_config() != model.get_config():
        raise ValueError(f"the benchmark report times {source}, whose architecture or input scale differs from "
                         "the published model's")
    env = report["environment"]
    load = env.get("load_average")
    load_text = f"; load average {load[0]:.2f} when it started" if load else ""
    rows = "\n".join(f"| {r['resolution']} | {r['path']} | {r['mode']} | {r['fps']:.1f} | "
                     f"{r['latency_ms']['mean']:.1f} |" for r in report["results"])
    # A report written before benchmark.py recorded its command: say so rather than guess its flags.
    command = report.get("command") or f"# the report does not record its command; it timed {source}"
    image = report.get("protocol", {}).get("image")
    frame = (f"the frame `{image}`" if image and image != NOISE
             else "a frame of uniform noise (seed 0), not a real scene")
    shares = sorted({r["boundary_share"] for r in report["results"] if r.get("boundary_share") is not None})
    if shares:  # reports before benchmark.py recorded it have none
        frame += (f" (the last mile interpolated {' / '.join(f'{100 * share:.1f}%' for share in shares)} of the 1/8 "
                  "cells there: class boundaries)")
    return f"""## Speed

Batch 1 at input scale x{model.input_scale:g} (`end_to_end`: a uint8 frame in, labels out; the modes and paths
are docs/benchmarks.md's), on {env.get("device")}: {env.get("cpu")} ({env.get("cpu_count")} cores,
{env.get("threads")} threads){load_text}; timed on `{source}` (the same network), on {frame}:

| resolution | path | mode | fps | latency mean (ms) |
|---|---|---|---:|---:|
{rows}

```bash
{command}
```
"""


def _minutes(seconds):
    return "unknown" if seconds is None else f"{seconds / 60:.0f} minutes"


def _load_run_model(run_dir, checkpoint):
    model_path = os.path.join(run_dir, f"{checkpoint}.keras")
    if not os.path.exists(model_path):
        raise FileNotFoundError(f"{model_path} does not exist: has the run in {run_dir} finished?")
    return model_path, load_model(model_path)


def publish(run_dir, name, out_dir, data_dir=None, checkpoint="final", flip=False, scales=None, split="val",
            hardware=None, notes=None, input_scale=None, selection_run=None, speed_report=None, log=print):
    """Evaluates a run's model and writes ``{name}.keras``, ``.md``, ``.json`` and ``_curve.png`` to `out_dir`.

    Args:
        run_dir: the training run folder.
        name: file stem of the published model (e.g. ``fast_scnn_camvid``).
        out_dir: where to write (e.g. ``pretrained/``).
        data_dir: dataset root for the evaluation (default: the run's own `data_dir`).
        checkpoint: ``final`` (the end of the schedule) or ``best`` (best val mIoU seen during training).
        flip, scales: test-time augmentation of the second evaluation (default scales: `input_scale` alone; no
            flip and no other scales: only the plain evaluation).
        split: the split to evaluate (without `selection_run`).
        hardware: a line describing where the run trained (default: this machine's CPU).
        notes: extra markdown for the card (what was tried, limits).
        input_scale: None (the default) keeps the model's own `input_scale` (what it was trained with,
            `TrainConfig.input_scale`); a number records that scale in the published model instead (a run
            trained at one scale and served at another, which the card then says). The single-scale evaluation
            runs there: images resized by this factor, logits back to the label size; evaluate.py, predict.py and
            the exports read it from the published file.
        selection_run: for a model trained on every frame there is (CamVid ``trainval``), the run folder of the
            same recipe trained without a held-out part (``--holdout_sequence``): its weights are evaluated on its
            own validation split, the part it never saw, and published beside the model as
            ``{name}_selection.keras`` so the card's number can be re-checked; the card's accuracy is that number,
            said so. The two runs must share their recipe (`recipe_differences`), or a ValueError names the
            differences. `split` is not used then.
        speed_report: an `experiments/benchmark.py` JSON report (a dict, or the path of the file) that timed this
            network; its rows become the card's *Speed* section (`speed_section`).

    Returns:
        dict with ``plain`` and (if any augmentation) ``tta`` metrics, the evaluated ``split`` and the written paths.
    """
    if checkpoint not in ("final", "best"):
        raise ValueError(f"checkpoint must be 'final' or 'best', got {checkpoint!r}")
    if input_scale is not None and not input_scale > 0:
        raise ValueError(f"input_scale must be positive, got {input_scale!r}")
    chain = stages(run_dir)  # every run's record, read once
    selection_chain = stages(selection_run) if selection_run else []
    config = chain[-1].started  # the settings the run started with
    records = chain[-1].changes
    final = chain[-1].settings  # the settings in force at the end (config itself without changes)
    selection = _check_selection(selection_chain, chain) if selection_run else None
    if isinstance(speed_report, str):
        with open(speed_report) as f:
            speed_report = json.load(f)
    model_path, model = _load_run_model(run_dir, checkpoint)
    data_dir = data_dir or config.data_dir
    if input_scale is not None and float(input_scale) != model.input_scale:
        model = model.rebuild(input_scale=float(input_scale))
    input_scale = model.input_scale
    speed = speed_section(speed_report, model) if speed_report else ""
    evaluated, evaluated_path = model, model_path
    if selection:
        split = selection.val_split
        evaluated_path, evaluated = _load_run_model(selection_run, checkpoint)
        if evaluated.input_scale != input_scale:
            evaluated = evaluated.rebuild(input_scale=input_scale)
    scales = (input_scale,) if not scales else tuple(float(s) for s in scales)
    info = data.get_info(config.dataset)

    def run_eval(**kwargs):
        batches = data.make_dataset(config.dataset, data_dir, split, training=False, batch_size=1)
        return evaluation.evaluate(evaluated, batches, info, **kwargs)

    log(f"evaluating {evaluated_path} on {config.dataset} {split} ...")
    plain = run_eval(scales=(input_scale,))
    other_scales = scales != (input_scale,)
    scales_text = ",".join(f"{s:g}" for s in scales)
    tta = run_eval(flip=flip, scales=scales) if flip or other_scales else None
    tta_label = "+".join(filter(None, ["flip" if flip else "", f"scales {scales_text}" if other_scales else ""]))
    os.makedirs(out_dir, exist_ok=True)
    keras_path = os.path.join(out_dir, f"{name}.keras")
    model.save(keras_path)
    paths = [keras_path]
    evaluated_file = keras_path
    if selection:
        evaluated_file = os.path.join(out_dir, f"{name}_selection.keras")
        evaluated.save(evaluated_file)
        paths.append(evaluated_file)
    metrics_path = os.path.join(out_dir, f"{name}.json")
    evaluation.write_json({"split": split, "evaluated_model": os.path.basename(evaluated_file), "plain": plain,
                           **({"tta": tta, "tta_setting": tta_label} if tta else {})}, metrics_path)
    curve_path = os.path.join(out_dir, f"{name}_curve.png")
    val_label = "held-out (selection run)" if selection else "val"
    with tempfile.TemporaryDirectory() as folder:  # one curve over every stage of a staged run
        train_metrics = os.path.join(folder, "train.jsonl")
        total_steps = _stacked_metrics(chain, train_metrics)
        val_metrics = None
        if selection:
            val_metrics = os.path.join(folder, "selection.jsonl")
            total_steps = _stacked_metrics(selection_chain, val_metrics)
        plot_training_curve(train_metrics, curve_path, plain["miou"], total_steps,
                            val_metrics_path=val_metrics, val_label=val_label)

    def chain_seconds(runs):
        times = [training_wall_time(stage.run_dir) for stage in runs]
        return None if None in times else sum(times)

    def chain_commands(runs):
        if len(runs) == 1:
            return train_command(runs[0].started)
        return "\n".join(
            f"# stage {index + 1} of {len(runs)}"
            + (" (resumed with changed settings: see its config_changes.jsonl)" if stage.changes else "")
            + f"\n{train_command(stage.started)}"
            for index, stage in enumerate(runs))

    seconds = chain_seconds(chain)
    num_train = len(data.list_examples(config.dataset, config.data_dir, config.train_split))
    steps = config.total_steps(num_train)  # as planned when the run started
    final_steps = _stage_steps(final)  # the steps the weights were trained for
    hardware = hardware or describe(environment())
    eval_command = (f"python experiments/evaluate.py --model={evaluated_file} --dataset={config.dataset} "
                    f"--data_dir={data_dir} --split={split}")
    eval_tta = eval_command + (" --flip" if flip else "") + (f" --scales={scales_text}" if other_scales else "")
    single = "single scale" if input_scale == 1.0 else f"single scale, input resized x{input_scale:g}"
    trained_at = float(final.input_scale)
    served = ("the scale it was trained and evaluated at" if trained_at == input_scale else
              f"the scale it is evaluated and served at (its training ran at x{trained_at:g}: serving at "
              f"x{input_scale:g} was chosen after training)")
    size_note = "" if input_scale == 1.0 else (
        f"; it runs on images resized x{input_scale:g}, {served}: the model "
        "records it (`input_scale` in its config) and evaluate.py, predict.py and the exports use it; `--scales` "
        "overrides")
    first = chain[0].settings
    origin = f"fine-tuned from `{first.init_from}`" if first.init_from else "trained from scratch"
    if len(chain) > 1:
        all_steps = sum(_stage_steps(stage.settings) for stage in chain)
        origin += (f" in {len(chain)} stages (each a run initialised from the previous stage's "
                   f"`{os.path.basename(config.init_from)}`; {all_steps} steps in all)")
    changed = sorted({name for record in records for name in record["changes"]})
    changed_note = (f" (as started; {', '.join(changed)} changed during the run: see *Settings changed during the "
                    "run*)") if records else ""
    command_note = ("The run was started with this command and **resumed with changed settings** "
                    "(`--allow_changes`, see *Settings changed during the run* below): this command alone does not "
                    "reproduce these weights.\n\n") if records else ""
    stage_text = f" of stage {len(chain)}, the last" if len(chain) > 1 else ""
    tta_text = f" / **{100 * tta['miou']:.1f}%** ({tta_label})" if tta else ""
    miou_text = f"**{100 * plain['miou']:.1f}%** ({single}){tta_text}"
    trained = (f"`{config.model}` ({count_trainable_params(model):,} parameters) {origin} on {config.dataset} "
               f"`{config.train_split}` ({num_train} images)")
    if selection:
        num_selection = len(data.list_examples(selection.dataset, selection.data_dir, selection.train_split))
        summary = (f"{trained}. Its accuracy is measured on frames it never saw "
                   f"by its **selection run**: the same recipe trained on `{selection.train_split}` "
                   f"({num_selection} images) and evaluated on `{split}`, which that run never trained on "
                   f"(`{os.path.basename(evaluated_file)}`, published beside it so the number can be re-checked). "
                   f"Frames of `{config.train_split}` are training data of this model: an evaluation on them (val "
                   "included) measures memory, not accuracy.")
        accuracy_rows = (f"| held-out mIoU (selection run, `{split}`) | {miou_text} |\n"
                         f"| held-out pixel accuracy | {100 * plain['pixel_accuracy']:.1f}% |")
        wall = (f"{_minutes(seconds)} (this model); {_minutes(chain_seconds(selection_chain))} (selection run); "
                f"on {hardware}")
        selection_section = f"""## Selection run (the held-out number)

The same recipe on `{selection.train_split}`, validated on `{split}`:

```bash
{chain_commands(selection_chain)}
```
"""
    else:
        summary = f"{trained}, evaluated on `{split}`."
        accuracy_rows = (f"| {split} mIoU | {miou_text} |\n"
                         f"| pixel accuracy | {100 * plain['pixel_accuracy']:.1f}% |")
        wall = f"{_minutes(seconds)} on {hardware}"
        selection_section = ""
    card = f"""# {name}

{summary}

| | |
|---|---|
{accuracy_rows}
| input | float32 RGB in [0, 255], any size{size_note} |
| output | logits, {info.num_classes} classes: {", ".join(info.class_names)} |
| weights | `{checkpoint}.keras` of the run (step {final_steps}{stage_text}) |
| training | {steps} steps ({steps * config.batch_size / num_train:.0f} epochs) of batch {config.batch_size}, \
crops {config.crop[0]}x{config.crop[1]}, random scale {config.scale_range[0]:g}-{config.scale_range[1]:g}, \
`{config.augment}` augmentation; {config.optimizer} lr {config.lr:g} poly {config.lr_power:g}, momentum \
{config.momentum:g}, L2 {config.weight_decay:g}, auxiliary losses {config.aux_weight:g}{_extras(config)}{changed_note} |
| wall time | {wall} |

## Training command{"s" if len(chain) > 1 else ""}

{command_note}```bash
{chain_commands(chain)}
```

{changes_section(config, records)}
{selection_section}
![training curve]({os.path.basename(curve_path)})

## Evaluation

```bash
{eval_command}
{eval_tta if tta else ""}
```

{iou_table({"": plain, **({tta_label: tta} if tta else {})}, digits=1)}

## Use

```bash
python experiments/predict.py --model={keras_path} --input=IMAGES --output_dir=OUT --format=overlay
python experiments/export.py --model={keras_path} --format=saved_model --output=OUT/saved_model
```

{speed}
{notes or ""}
"""
    card_path = os.path.join(out_dir, f"{name}.md")
    with open(card_path, "w") as f:
        f.write(card)
    paths += [card_path, metrics_path, curve_path]
    log(f"wrote {', '.join(paths)}")
    return {"plain": plain, "tta": tta, "split": split, "paths": paths}
