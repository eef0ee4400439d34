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


def run_schedule(config, widths=PAPER_WIDTHS, wide_steps=None, finetune_steps=None, finetune_lr=None, importance="l1"):
    """Runs the schedule and returns one row per stage: {stage, width, params, steps, lr, importance, miou, workdir}.

    Args:
        config: a `TrainConfig` for the run (its `width` and `steps` are set per stage; `workdir` is the parent).
        widths: decreasing width multipliers, the first trained from scratch.
        wide_steps: steps of the first stage (default: `config.steps`).
        finetune_steps: steps of each later stage (default: `config.steps`).
        finetune_lr: base learning rate of each later stage's poly schedule (default: `config.lr`). The paper does
            not give one; fine-tuning a pruned network usually wants less than training from scratch.
        importance: how each pruning step ranks filters: ``"l1"`` (the paper's) or ``"bn_scaled_l1"`` (ours);
            recorded in the rows of the pruned stages (None for the first, which is not pruned).

    Writes ``{workdir}/pruning.json`` with the rows.
    """
    if list(widths) != sorted(widths, reverse=True) or len(set(widths)) != len(widths):
        raise ValueError(f"pruning widths must strictly decrease, got {widths}")
    check_importance(importance)
    rows, previous = [], None
    for index, width in enumerate(widths):
        steps = (wide_steps if index == 0 else finetune_steps) or config.steps
        lr = config.lr if index == 0 or finetune_lr is None else finetune_lr
        stage_config = dataclasses.replace(
            config, width=width, steps=steps, epochs=None, lr=lr, workdir=stage_dir(config.workdir, index, width)
        )
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
        previous = final_path
        rows.append(
            dict(
                stage=index,
                width=width,
                params=count_trainable_params(model),
                steps=steps,
                lr=lr,
                importance=None if index == 0 else importance,
                miou=metrics.get("miou"),
                workdir=stage_config.workdir,
            )
        )
    with open(os.path.join(config.workdir, "pruning.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return rows


def markdown_table(rows):
    """The schedule's rows as a markdown table."""
    lines = ["| stage | width | parameters | steps | val mIoU |", "|---|---|---|---|---|"]
    for row in rows:
        miou = "-" if row["miou"] is None else f"{100 * row['miou']:.1f}%"
        lines.append(f"| {row['stage']} | {row['width']:g}x | {row['params']:,} | {row['steps']} | {miou} |")
    return "\n".join(lines)
