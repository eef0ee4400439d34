"""The ContextNet paper's pruning schedule: train wide, then prune by filter L1 norm and fine-tune, stage by stage.

Section 3.2: "we train our network with twice the (target) number of feature maps ... We then decrease parameters
progressively by pruning to 1.5, 1.25 and 1 times the original size." Each stage is an ordinary training run
(`contextnet_tf.training.train`) in its own run folder, ``{workdir}/stage{i}_w{width}``; the first trains the widest
network from scratch, every later one starts from the previous stage's final weights pruned with
`contextnet_tf.pruning.filters.transfer_pruned_weights`, ranking filters by the paper's L1 norm or, as an option of
ours, by the L1 norm scaled by the following batch norm (``importance``, see `contextnet_tf.pruning.filters`). A killed
schedule resumes: finished stages are skipped, an interrupted stage resumes from its latest checkpoint.
"""

import dataclasses
import json
import logging
import os

from contextnet_tf.models import SegmentationModel, load_model, recipe
from contextnet_tf.models.profiling import count_trainable_params
from contextnet_tf.pruning.filters import check_importance, transfer_pruned_weights
from contextnet_tf.training import train
from contextnet_tf.training.run_dir import RunDir, training_wall_time

PAPER_WIDTHS = (2.0, 1.5, 1.25, 1.0)


def stage_dir(workdir, index, width):
    """The run folder of stage `index` at `width`."""
    return os.path.join(workdir, f"stage{index}_w{width:g}")


def pruned_model_fn(source_path, width, importance="l1"):
    """A `train` model_fn: the model saved at `source_path` pruned to `width`, ranking filters by `importance`.

    The returned function builds the source's recipe at `width` with the input shape and aux heads the training run
    asks for, and copies in the kept filters (`transfer_pruned_weights`).
    """
    check_importance(importance)
    source = load_model(source_path)

    def model_fn(input_shape, aux):
        changes = dict(input_shape=input_shape, aux=aux, width=width)
        target = SegmentationModel.from_config({**recipe(source), **changes})
        return transfer_pruned_weights(source, target, importance)

    return model_fn


def recalibrated_stage(stage_config, num_batches):
    """The stage's final model with its batch-norm statistics re-estimated (`training.batch_norm.recalibrate` on
    `num_batches` batches of the stage's training pipeline), saved as ``recalibrated.keras`` beside ``final.keras``
    with its evaluation in ``val_metrics_recalibrated.json`` (both reused when present). Returns (path, metrics)."""
    from contextnet_tf.training.batch_norm import recalibrate_on_training_data
    from contextnet_tf.training.validation import evaluate_on_val

    path = os.path.join(stage_config.workdir, "recalibrated.keras")
    metrics_path = os.path.join(stage_config.workdir, "val_metrics_recalibrated.json")
    if os.path.exists(path) and os.path.exists(metrics_path):
        with open(metrics_path) as f:
            return path, json.load(f)
    model = load_model(os.path.join(stage_config.workdir, "final.keras"))
    recalibrate_on_training_data(model, stage_config, num_batches)
    metrics = evaluate_on_val(model, stage_config)
    model.save(path)
    with open(metrics_path, "w") as f:
        json.dump(metrics, f)
    return path, metrics


def _check_recorded_settings(workdir, importance, recalibrate_batches):
    """Refuses to resume a schedule whose pruning.json records another importance or recalibration: its finished
    stages would otherwise be reused as if pruned this way."""
    path = os.path.join(workdir, "pruning.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        rows = [row for row in json.load(f) if row.get("stage", 0) > 0]
    for name, value in (("importance", importance), ("recalibrate_batches", recalibrate_batches)):
        recorded = {row.get(name, 0 if name == "recalibrate_batches" else "l1") for row in rows}
        if recorded and recorded != {value}:
            raise ValueError(f"{workdir} holds a pruning schedule run with {name} {', '.join(map(str, sorted(recorded)))}"
                             f", not {value}: use a new --workdir")


def run_schedule(config, widths=PAPER_WIDTHS, wide_steps=None, finetune_steps=None, finetune_lr=None, importance="l1",
                 recalibrate_batches=0, wide_dir=None):
    """Runs the schedule and returns one row per stage: {stage, width, params, steps, lr, importance, miou,
    miou_before_recalibration, workdir}.

    Args:
        config: a `TrainConfig` for the run (its `width` and `steps` are set per stage; `workdir` is the parent).
        widths: decreasing width multipliers, the first trained from scratch.
        wide_steps: steps of the first stage (default: `config.steps`).
        finetune_steps: steps of each later stage (default: `config.steps`).
        finetune_lr: base learning rate of each later stage's poly schedule (default: `config.lr`). The paper does
            not give one; fine-tuning a pruned network usually wants less than training from scratch.
        importance: how each pruning step ranks filters: ``"l1"`` (the paper's) or ``"bn_scaled_l1"`` (ours);
            recorded in the rows of the pruned stages (None for the first, which is not pruned).
        recalibrate_batches: if > 0, each pruned stage's batch-norm statistics are re-estimated on this many
            training batches after its fine-tuning (`recalibrated_stage`); the row's ``miou`` is then that of the
            recalibrated model, ``miou_before_recalibration`` the stage's own, and the next stage prunes the
            recalibrated model. With momentum 0.99 a fine-tuning of ``n`` steps still evaluates with ``0.99 ** n`` of
            the statistics of the network before the cut (`contextnet_tf.training.batch_norm`). Not in the paper,
            whose fine-tuning is long enough for this not to matter; off by default.
        wide_dir: a finished first-stage run folder to use instead of training stage 0 (e.g. the same wide network
            pruned with another importance); its record must match stage 0's settings.

    Writes ``{workdir}/pruning.json`` with the rows.
    """
    if list(widths) != sorted(widths, reverse=True) or len(set(widths)) != len(widths):
        raise ValueError(f"pruning widths must strictly decrease, got {widths}")
    check_importance(importance)
    _check_recorded_settings(config.workdir, importance, recalibrate_batches)
    rows, previous = [], None
    for index, width in enumerate(widths):
        steps = (wide_steps if index == 0 else finetune_steps) or config.steps
        lr = config.lr if index == 0 or finetune_lr is None else finetune_lr
        stage_config = dataclasses.replace(
            config, width=width, steps=steps, epochs=None, lr=lr, workdir=stage_dir(config.workdir, index, width)
        )
        if index == 0 and wide_dir is not None:
            if not os.path.exists(os.path.join(wide_dir, "final.keras")):
                raise ValueError(f"wide_dir {wide_dir} holds no finished run (no final.keras)")
            stage_config = dataclasses.replace(stage_config, workdir=wide_dir)
            RunDir(wide_dir, chief=False).check_resume(stage_config, step=steps)
        final_path = os.path.join(stage_config.workdir, "final.keras")
        metrics_path = os.path.join(stage_config.workdir, "val_metrics.json")
        if os.path.exists(final_path) and os.path.exists(metrics_path):
            logging.info("pruning stage %d (width %g) already finished in %s", index, width, stage_config.workdir)
            model = load_model(final_path)
            with open(metrics_path) as f:
                metrics = json.load(f)
        else:
            model_fn = None if previous is None else pruned_model_fn(previous, width, importance)
            logging.info("pruning stage %d: width %g, %d steps, %s", index, width, steps, stage_config.workdir)
            result = train(stage_config, model_fn=model_fn)
            model, metrics = result.model, result.metrics or {}
        previous, before = final_path, None
        if index > 0 and recalibrate_batches > 0:
            before = metrics.get("miou")
            previous, metrics = recalibrated_stage(stage_config, recalibrate_batches)
        rows.append(
            dict(
                stage=index,
                width=width,
                params=count_trainable_params(model),
                steps=steps,
                lr=lr,
                importance=None if index == 0 else importance,
                miou=metrics.get("miou"),
                miou_before_recalibration=before,
                recalibrate_batches=recalibrate_batches if index > 0 else 0,
                train_seconds=training_wall_time(stage_config.workdir),
                workdir=stage_config.workdir,
            )
        )
    with open(os.path.join(config.workdir, "pruning.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return rows


def markdown_table(rows):
    """The schedule's rows as a markdown table."""
    recalibrated = any(row.get("miou_before_recalibration") is not None for row in rows)

    def percent(value):
        return "-" if value is None else f"{100 * value:.1f}%"

    if not recalibrated:
        lines = ["| stage | width | parameters | steps | val mIoU |", "|---|---|---|---|---|"]
    else:
        lines = ["| stage | width | parameters | steps | val mIoU (batch norm recalibrated) | val mIoU before |",
                 "|---|---|---|---|---|---|"]
    for row in rows:
        line = f"| {row['stage']} | {row['width']:g}x | {row['params']:,} | {row['steps']} | {percent(row['miou'])} |"
        if recalibrated:
            line += f" {percent(row.get('miou_before_recalibration'))} |"
        lines.append(line)
    return "\n".join(lines)


def run_variants(config, study_dir, seeds, variants, **schedule_kwargs):
    """The schedule with several pruning variants and seeds, sharing each seed's wide network.

    Args:
        config: the `TrainConfig` of every stage (its seed replaced by each of `seeds`; workdir unused).
        study_dir: parent folder; variant ``name`` with seed ``s`` runs in ``study_dir/{name}_s{s}``.
        seeds: the seeds.
        variants: {name: {"importance": ..., "recalibrate_batches": ...}} (`run_schedule` keyword arguments); the
            first variant trains each seed's stage 0, the others prune that same wide network (``wide_dir``).
        **schedule_kwargs: `run_schedule`'s other arguments (widths, wide_steps, finetune_steps, finetune_lr).

    Returns:
        {name: [rows of `run_schedule`, one list per seed in the order of `seeds`]}, made seed by seed.
    """
    names = list(variants)
    if not names:
        raise ValueError("run_variants needs at least one variant")
    results = {name: [] for name in names}
    for seed in seeds:
        wide_dir = None
        for name in names:
            seed_config = dataclasses.replace(config, seed=int(seed), workdir=os.path.join(study_dir, f"{name}_s{seed}"))
            logging.info("pruning variant %s, seed %s: %s", name, seed, seed_config.workdir)
            rows = run_schedule(seed_config, wide_dir=wide_dir, **variants[name], **schedule_kwargs)
            wide_dir = wide_dir or rows[0]["workdir"]
            results[name].append(rows)
    return results
