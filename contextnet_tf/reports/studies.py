"""The papers' ablation studies as library calls: what the notebooks in `notebooks/` run, cell by cell.

* `train_study_run`: trains one network of a study with the package's training loop (or reuses the finished run in
  the same folder, so notebooks share runs and a re-run of a notebook costs no training), and returns its val
  metrics and final model.
* `zero_fusion_input`: a copy of a trained network with one input of a fusion unit zeroed: ContextNet's detail or
  context branch (paper section 3.2, "Context Branch Analysis", Figure 2) or Fast-SCNN's learning-to-downsample skip
  connection (Fast-SCNN section 3.2, "Ablation Study", Figure 3).
* `ensemble`: averaged softmax of independently trained networks (ContextNet section 3.2, "ContextNet vs Ensemble
  Nets": the context-only ``cn14-context`` and detail-only ``cn14-detail`` networks).
* `CLASS_GROUPS` / `group_iou`: ContextNet Table 5's small-size, fine-detail and rare class groups.
* `class_iou_table`: Table 5's shape, per-class IoU of several networks with each class's group
  (`contextnet_tf.reports.tables.iou_table`).
* `StudyRecipe`: a study's training recipe (preset, data, split, budget, crop) and the run folder named after it;
  `ContextNetRecipe` is the one recipe of the two ContextNet notebooks, which share their cn14 runs: one definition,
  so the two cannot drift apart.

The papers' numbers the notebooks print beside ours are in `contextnet_tf.reports.references`.

What "zeroing a branch" means (the ContextNet paper says it "zeroed the output" of a branch; Fast-SCNN says it
"zero-out the contribution of the skip connection"): we zero the branch's *contribution to the fusion sum*, i.e. the
output of the fusion unit's linear 1x1 conv + batch norm on that input, by setting that batch norm's gamma and beta
to 0. Zeroing the raw branch features instead would still add the batch norm's shift (beta - gamma * mean / std), a
constant the network never saw alone. Pinned in tests/test_reports_studies.py.
"""

import dataclasses
import json
import os
import time

import keras
import numpy as np

from contextnet_tf import data
from contextnet_tf.evaluation.metrics import evaluate
from contextnet_tf.reports.tables import iou_table
from contextnet_tf.models import SegmentationModel

# ContextNet Table 5's groups (Cityscapes names), and the CamVid classes that play the same roles. CamVid has no
# class as rare as Cityscapes' bus, train and truck; its rarest, bicyclist, is also its fine-detail class.
CLASS_GROUPS = {
    "cityscapes": {
        "small": ("fence", "pole", "traffic light", "traffic sign"),
        "fine detail": ("person", "rider", "motorcycle", "bicycle"),
        "rare": ("bus", "train", "truck"),
    },
    "camvid": {
        "small": ("pole", "sign symbol", "fence"),
        "fine detail": ("pedestrian", "bicyclist"),
        "rare": ("bicyclist",),
    },
}
CLASS_GROUPS["synthetic"] = CLASS_GROUPS["cityscapes"]


def _canonical(name):
    return name.lower().replace("_", " ").replace("-", " ")


def group_iou(metrics, dataset):
    """Mean IoU (fraction) of each class group of `dataset` from `evaluate` metrics; classes absent are skipped.

    Raises:
        ValueError: if a group names a class the metrics do not have (a wrong dataset).
    """
    class_iou = {_canonical(k): v for k, v in metrics["class_iou"].items()}
    groups = {}
    for group, names in CLASS_GROUPS[dataset].items():
        values = []
        for name in names:
            if _canonical(name) not in class_iou:
                raise ValueError(f"class {name!r} of group {group!r} is not in the metrics ({sorted(class_iou)})")
            if class_iou[_canonical(name)] is not None:
                values.append(class_iou[_canonical(name)])
        groups[group] = float(np.mean(values)) if values else None
    return groups


def class_iou_table(metrics_by_network, dataset):
    """Markdown per-class IoU (%) of several networks (`{column: evaluate metrics}`), with each class's Table 5
    group (`CLASS_GROUPS`) beside its name."""
    group_of = {}
    for group, names in CLASS_GROUPS[dataset].items():
        for name in names:
            group_of[name] = ", ".join(filter(None, [group_of.get(name), group]))
    return iou_table(metrics_by_network, digits=1, row_labels={"group": group_of}, categories=False)


def _copy(model):
    if isinstance(model, SegmentationModel):
        return model.rebuild()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def fusion_inputs(model):
    """{"high": [...], "low": [...]}: names of the batch norms ending each fusion unit's two 1x1 projections.

    ContextNet: ``fusion*`` units (cn124 has two: ``fusion2`` first, then ``fusion``); Fast-SCNN: ``ffm``.
    """
    names = [layer.name for layer in model.layers]
    high = [n for n in names if n.endswith("_high_pw_bn") and (n.startswith("fusion") or n.startswith("ffm"))]
    low = [n for n in names if n.endswith("_low_pw_bn") and (n.startswith("fusion") or n.startswith("ffm"))]
    if not high or not low:
        raise ValueError(f"model {model.name!r} has no fusion unit (layers *_high_pw_bn / *_low_pw_bn)")
    return {"high": high, "low": low}


def zero_fusion_input(model, which):
    """A copy of `model` with one input of its fusion unit(s) contributing exactly zero.

    Args:
        model: a trained ContextNet or Fast-SCNN (logits model, any size).
        which: ``"detail"`` (every shallow branch of a ContextNet) or ``"context"`` (the deep branch: the low input
            of the first fusion unit); for Fast-SCNN ``"skip"`` (the learning-to-downsample skip connection) or
            ``"global"`` (the global feature extractor).

    Returns:
        A new model with the same weights except the chosen projections' batch-norm gamma and beta, set to zero.
    """
    inputs = fusion_inputs(model)
    targets = {
        "detail": inputs["high"],
        "skip": inputs["high"],
        "context": inputs["low"][:1],
        "global": inputs["low"][:1],
    }
    if which not in targets:
        raise ValueError(f"which must be one of {', '.join(targets)}, got {which!r}")
    is_fast_scnn = inputs["high"][0].startswith("ffm")
    if is_fast_scnn != (which in ("skip", "global")):
        allowed = "skip, global" if is_fast_scnn else "detail, context"
        raise ValueError(f"{model.name!r} takes which in ({allowed}), got {which!r}")
    copy = _copy(model)
    for name in targets[which]:
        layer = copy.get_layer(name)
        weights = layer.get_weights()  # gamma, beta, moving mean, moving variance
        layer.set_weights([np.zeros_like(weights[0]), np.zeros_like(weights[1]), *weights[2:]])
    return copy


def ensemble(models, input_shape):
    """A model taking `input_shape` images and averaging the softmax probabilities of `models`.

    Its output is probabilities, not logits; argmax (what evaluation and prediction take) is unaffected. Members may
    share a name (seeds of one network all load as ``fast_scnn``): such members enter the ensemble under the names
    ``NAME_member0``, ``NAME_member1``, ... (the same layers and weights; the callers' models are not renamed).
    """
    if len(models) < 2:
        raise ValueError(f"an ensemble needs at least two models, got {len(models)}")
    image = keras.Input(tuple(input_shape[:2]) + (3,), name="image")
    names = [model.name for model in models]
    probs = []
    for i, model in enumerate(models):
        if names.count(model.name) > 1:  # a functional model's operations need unique names
            model = keras.Model(model.input, model.output, name=f"{model.name}_member{i}")
        logits = model(image)
        logits = logits["logits"] if isinstance(logits, dict) else logits
        probs.append(keras.layers.Softmax(name=f"member{i}_softmax")(logits))
    return keras.Model(image, keras.layers.Average(name="average")(probs), name="ensemble")


@dataclasses.dataclass
class StudyRun:
    """One trained network of a study: its run folder, final model, val metrics and training wall time."""

    name: str
    workdir: str
    model: keras.Model
    metrics: dict
    train_seconds: float
    config: dict

    @property
    def miou(self):
        return self.metrics["miou"]


def train_study_run(runs_root, tag, config, model_fn=None):
    """Trains `config` in ``runs_root/tag`` (or reuses the finished run there) and returns a `StudyRun`.

    Args:
        runs_root: folder holding a study's run folders (shared by the notebooks).
        tag: run folder name.
        config: a `contextnet_tf.training.TrainConfig`; its workdir is replaced by ``runs_root/tag``.
        model_fn: passed to `train` (e.g. a pruned model's builder).

    A run folder whose ``final.keras`` and ``val_metrics.json`` exist is reused as is (delete the folder to retrain)
    if its record (config.json and config_changes.jsonl) agrees with `config`, else `RunRecordError` names the
    differing settings; an unfinished one is resumed from its last checkpoint. The training time is this call's wall
    time, or for a run trained by another program its TensorBoard event span (`run_dir.training_wall_time`).
    """
    from contextnet_tf.training import train
    from contextnet_tf.training.run_dir import RunDir, training_wall_time

    workdir = os.path.join(runs_root, tag)
    config = dataclasses.replace(config, workdir=workdir)
    final, metrics_path = os.path.join(workdir, "final.keras"), os.path.join(workdir, "val_metrics.json")
    timing_path = os.path.join(workdir, "study_time.json")
    if not (os.path.exists(final) and os.path.exists(metrics_path)):
        start = time.perf_counter()
        train(config, model_fn=model_fn)
        with open(timing_path, "w") as f:
            json.dump({"train_seconds": time.perf_counter() - start}, f)
    else:
        RunDir(workdir, chief=False).check_resume(config, step="all" if config.steps is None else config.steps)
    with open(metrics_path) as f:
        metrics = json.load(f)
    if os.path.exists(timing_path):
        with open(timing_path) as f:
            seconds = json.load(f)["train_seconds"]
    else:
        seconds = training_wall_time(workdir)
    model = keras.saving.load_model(final, compile=False)
    return StudyRun(tag, workdir, model, metrics, seconds, dataclasses.asdict(config))


@dataclasses.dataclass(frozen=True, kw_only=True)
class StudyRecipe:
    """The training recipe and run folder of one notebook study: a paper preset with the study's data, split, budget,
    crop and (optionally) class weighting, the same for every arm and seed.

    `config(model, **overrides)` is `TrainConfig.from_preset(preset, ...)` with these settings (``overrides``: what
    distinguishes an arm, e.g. ``aux_weight``); `study_dir` names the folder after the settings that are not an arm's
    (name, dataset, held-out sequence, steps, batch, crop, and class weighting when set; not the data folder's path),
    and `train_study_run` refuses to reuse a run folder whose recorded config differs in anything else.
    """

    name: str                      # the folder's prefix, e.g. "fast_scnn_ablations"
    preset: str                    # a `contextnet_tf.training.presets` name
    dataset: str
    data_dir: str
    runs_root: str
    holdout_sequence: str | None
    steps: int
    batch_size: int
    crop: tuple
    class_weighting: str | None = None   # None: the preset's, and the folder name does not carry it
    evals: int = 4

    def config(self, model, **overrides):
        """The `TrainConfig` of one network of the study (the seed is set per run by `seeded.run_arms`)."""
        from contextnet_tf.training import TrainConfig

        settings = dict(dataset=self.dataset, data_dir=self.data_dir, holdout_sequence=self.holdout_sequence,
                        steps=self.steps, batch_size=self.batch_size, crop=tuple(self.crop),
                        eval_every=max(1, self.steps // self.evals), progress=False)
        if self.class_weighting is not None:
            settings["class_weighting"] = self.class_weighting
        return TrainConfig.from_preset(self.preset, model=model, **{**settings, **overrides})

    @property
    def study_dir(self):
        """``runs_root/{name}_{dataset}_{holdout sequence or val}_s{steps}_b{batch}_c{H}x{W}[_{class weighting}]``."""
        height, width = self.crop
        folder = (f"{self.name}_{self.dataset}_{self.holdout_sequence or 'val'}_s{self.steps}_b{self.batch_size}"
                  f"_c{height}x{width}")
        if self.class_weighting is not None:
            folder += f"_{self.class_weighting}"
        return os.path.join(self.runs_root, folder)

    def budget_check(self, runs, budget, seeds, progress=print):
        """Whether the study's budget still gains over a smaller one: each arm of `runs` (``{arm: [StudyRun]}``, this
        recipe's `seeded.run_arms` with arms named after their model, e.g. ``cn14``) trained again for `budget` steps
        and `seeds`, a full schedule of its own in the smaller recipe's `study_dir` (finished runs are reused), judged
        by `seeded.budget_record` against `runs` at this recipe's steps.

        The end of one run's curve is bent upwards by the poly schedule, so it cannot say alone whether a budget has
        reached a plateau; two full schedules can.
        """
        from contextnet_tf.reports import seeded

        if not 0 < budget < self.steps:
            raise ValueError(f"the budget check's steps must be between 0 and the study's {self.steps}, got {budget}")
        smaller = dataclasses.replace(self, steps=budget)
        smaller_runs = seeded.run_arms(smaller.study_dir, {arm: smaller.config(arm) for arm in runs}, seeds,
                                       progress=progress)
        return seeded.budget_record({budget: smaller_runs, self.steps: runs})


@dataclasses.dataclass(frozen=True, kw_only=True)
class ContextNetRecipe(StudyRecipe):
    """The training recipe of `notebooks/contextnet_resolution.ipynb` and `notebooks/contextnet_branches.ipynb`.

    Both notebooks train cn14 with the same recipe and reuse each other's cn14 runs, so the recipe and the folder it
    trains in are defined here once: `StudyRecipe` with the ContextNet preset and the folder prefix ``contextnet``
    (``runs_root/contextnet_{dataset}_{holdout sequence or val}_s{steps}_b{batch}_c{H}x{W}_{class weighting}``).
    """

    name: str = "contextnet"
    preset: str = "contextnet_paper"
    class_weighting: str = dataclasses.field()   # required: both notebooks name theirs (and the folder carries it)


def prepare_data(dataset, data_root, runs_root, synthetic_size=(64, 128), num_train=24, num_val=4):
    """The data folder of a study: `data_root`, or for ``synthetic`` with no root a synthetic city generated once
    under ``runs_root/synthetic_city``. Raises a clear error for a missing real data folder."""
    if data_root:
        if not os.path.isdir(data_root):
            raise FileNotFoundError(f"DATA_ROOT {data_root!r} does not exist (dataset {dataset!r})")
        return data_root
    if dataset != "synthetic":
        raise ValueError(f"dataset {dataset!r} needs DATA_ROOT (its folder); only 'synthetic' is generated")
    city = os.path.join(runs_root, "synthetic_city")
    if not os.path.isdir(os.path.join(city, "leftImg8bit", "val")):
        data.generate_synthetic_city(city, num_train=num_train, num_val=num_val, image_size=synthetic_size, seed=0)
    return city


def val_dataset(dataset, data_dir, split="val"):
    """Full-size, unaugmented evaluation batches (batch 1) and the dataset's `info`."""
    info = data.get_info(dataset)
    return data.make_dataset(dataset, data_dir, split, training=False, batch_size=1), info


def evaluate_model(model, dataset, data_dir, split="val", **kwargs):
    """`contextnet_tf.evaluation.metrics.evaluate` on a split of a dataset (kwargs: flip, scales, max_images)."""
    batches, info = val_dataset(dataset, data_dir, split)
    return evaluate(model, batches, info, **kwargs)


def markdown_table(rows, columns):
    """A markdown table of dict rows; `columns` maps a header to a key or a function of the row.

    Floats in [0, 1] under headers containing "IoU" are shown as percentages with one decimal.
    """
    headers = list(columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = []
        for header in headers:
            getter = columns[header]
            value = getter(row) if callable(getter) else row.get(getter)
            if value is None:
                cells.append("-")
            elif isinstance(value, float) and "iou" in header.lower() and 0.0 <= value <= 1.0:
                cells.append(f"{100 * value:.1f}")
            elif isinstance(value, float):
                cells.append(f"{value:.2f}")
            elif isinstance(value, int):
                cells.append(f"{value:,}")
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def predict_examples(models, dataset, data_dir, num_images=3, split="val"):
    """Colour-coded predictions of several models on the first images of a split, for a figure grid.

    Args:
        models: dict mapping a column title to a model (any input size; rebuilt at the image size when needed).
        dataset, data_dir, split: the images to use (full size, unaugmented).
        num_images: rows of the grid.

    Returns:
        A list of rows, each a dict ``{"image": uint8 RGB, "ground truth": RGB, <title>: RGB, ...}``.
    """
    from contextnet_tf.evaluation.prediction import Predictor

    batches, info = val_dataset(dataset, data_dir, split)
    predictors = {title: Predictor(model) for title, model in models.items()}
    rows = []
    for images, labels in batches.take(num_images):
        row = {"image": np.clip(images[0].numpy(), 0, 255).astype(np.uint8),
               "ground truth": data.colorize(labels[0].numpy(), info)}
        for title, predictor in predictors.items():
            row[title] = data.colorize(predictor.labels(images)[0], info)
        rows.append(row)
    return rows
