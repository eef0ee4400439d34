"""The one-command quick start: data, training, evaluation, folding, benchmark and export, summed up in a report.

    python experiments/quickstart.py                      # the built-in synthetic city, no download
    python experiments/quickstart.py --dataset=camvid --data_dir=../shared/data/camvid --crop=352x480

`run(config)` runs seven stages with the library's own pieces, printing a banner and progress for each:

1. data: generate the synthetic city (`contextnet_tf.data.generate_synthetic_city`) into ``{workdir}/synthetic_city``,
   or check the real dataset under `QuickstartConfig.data_dir`;
2. train: the custom training loop (`contextnet_tf.training.train`) in the run folder ``{workdir}/run``;
3. evaluate: `contextnet_tf.evaluation.metrics.evaluate` on the val split, per-class IoU table;
4. fold: `contextnet_tf.fold_batch_norm`, checked against the unfolded logits on a val image (within `FOLD_TOLERANCE`);
5. benchmark: end to end, batch 1, at the data's image resolution, unfolded and folded (`contextnet_tf.deploy.speed`);
6. export: a SavedModel of the folded model (`contextnet_tf.deploy.export.export`), reloaded in a fresh process and compared with the
   Keras model on a uint8 val image (`contextnet_tf.deploy.export_check.verify_export`);
7. report: ``{workdir}/report.md`` with ``training_curve.png``, ``predictions.png``, ``metrics.json``,
   ``benchmark.json`` / ``benchmark.md``, ``summary.json`` (every number of the report) and ``saved_model/``.

Running again with the same workdir reuses what is there: the synthetic city when it was generated with the same
settings, the training run (a finished run is not trained again; an interrupted one resumes from its latest
checkpoint; more ``steps`` continue it); evaluation, folding, benchmark, export and report are always redone.
A change that makes the old run a different experiment (model, dataset, aux weight, optimiser, synthetic-city
settings) is an error naming ``--fresh``, which deletes the quickstart's own outputs in the workdir and starts over.

The defaults (Fast-SCNN, 200 + 20 synthetic images at 256x512, 500 SGD steps of 8 crops of 128x256 from lr 0.1,
auxiliary losses on) reach 23.4% val mIoU (53.5% category mIoU, 75.6% pixel accuracy) in 5.8 minutes on the 2-core
development machine while other training shared it (load average about 6; training is 93% of the time), less on an
idle one. See `QuickstartConfig` for what each setting does.
"""

import contextlib
import dataclasses
import json
import os
import shlex
import shutil
import time

import numpy as np

from contextnet_tf import cli, data
from contextnet_tf.cli import option
from contextnet_tf.deploy import export, export_check, speed
from contextnet_tf.deploy.folding import fold_batch_norm
from contextnet_tf.environment import environment
from contextnet_tf.evaluation import metrics as evaluation
from contextnet_tf.evaluation import prediction
from contextnet_tf.models import MODEL_NAMES, SegmentationModel, build_model, copy_weights_by_name, dataset_recipe
from contextnet_tf.models.profiling import count_trainable_params
from contextnet_tf.reports import plots
from contextnet_tf.reports.tables import iou_table
from contextnet_tf.training import TrainConfig, checkpoints, train
from contextnet_tf.training.config import OPTIMIZERS
from contextnet_tf.training.run_dir import RunDir, RunRecordError

FOLD_TOLERANCE = 1e-4  # Max |folded - unfolded| logit difference that passes the folding check.

DATA_FOLDER = "synthetic_city"
RUN_FOLDER = "run"
SAVED_MODEL_FOLDER = "saved_model"
DATA_STAMP = "quickstart_data.json"
REPORT_FILES = ("report.md", "summary.json", "metrics.json", "benchmark.json", "benchmark.md", "training_curve.png",
                "predictions.png")
STAGES = ("data", "train", "evaluate", "fold", "benchmark", "export", "report")


class QuickstartError(ValueError):
    """A bad setting or a workdir that cannot be reused; the message names the flag to change."""


@dataclasses.dataclass(frozen=True)
class QuickstartConfig:
    """Settings of `run`; each field is the `experiments/quickstart.py` flag of the same name (generated from these
    declarations by `contextnet_tf.cli.define_flags`, help text included)."""

    workdir: str = option(os.path.join("runs", "quickstart"), "Report folder (run folder, synthetic city, "
                          "SavedModel and report files go inside).")
    dataset: str = option("synthetic", "synthetic (generated unless --data_dir is given, no download), cityscapes or "
                          "camvid (need --data_dir).", choices=data.DATASET_NAMES)
    data_dir: str | None = option(None, "Dataset root; required for cityscapes and camvid, optional for synthetic "
                                  "(an existing city, e.g. from experiments/make_synthetic_city.py, used as it is).")
    model: str = option("fast_scnn", "Network.", choices=MODEL_NAMES)
    num_train: int = option(200, "Synthetic city: training images.")
    num_val: int = option(20, "Synthetic city: validation images.")
    image_size: tuple[int, int] = option(data.DEFAULT_IMAGE_SIZE, "Synthetic city: image size HxW.", syntax="size")
    steps: int = option(500, "Training steps.")
    batch_size: int = option(8, "Training batch size.")
    crop: tuple[int, int] = option((128, 256), "Training crop HxW.", syntax="size")
    optimizer: str = option("sgd", "Optimiser.", choices=OPTIMIZERS)
    lr: float = option(0.1, "Base learning rate of the poly schedule.")
    aux_weight: float = option(0.4, "Weight of each auxiliary loss (0: none).")
    eval_every: int = option(100, "Validate every N training steps (the points of the mIoU curve; 0: at the end "
                             "only).")
    seed: int = option(0, "Seed of the synthetic city, the weights and the data order.")
    max_val_images: int | None = option(None, "Evaluate on at most N val images (default: all).")
    num_prediction_images: int = option(4, "Val images drawn in predictions.png.")
    burn_in: int = option(10, "Benchmark: untimed frames first (the papers use 100).")
    frames: int = option(20, "Benchmark: timed frames (the papers use 100).")
    fresh: bool = option(False, "Delete the quickstart's outputs in --workdir first and start over instead of "
                         "reusing them.")

    def __post_init__(self):
        for name in ("image_size", "crop"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))


def check_config(config):
    """Raises `QuickstartError` naming the flag of the first bad setting of a `QuickstartConfig`."""

    def fail(flag, message):
        raise QuickstartError(f"--{flag}: {message}")

    if config.dataset not in data.DATASET_NAMES:
        fail("dataset", f"unknown dataset {config.dataset!r}; choose one of {', '.join(data.DATASET_NAMES)}")
    if config.dataset != "synthetic" and not config.data_dir:
        fail("data_dir", f"--dataset={config.dataset} needs --data_dir, the dataset root (see docs/data.md for the "
                         "layout); only --dataset=synthetic is generated")
    if config.data_dir and not os.path.isdir(config.data_dir):
        fail("data_dir", f"{config.data_dir!r} is not a folder")
    if config.model not in MODEL_NAMES:
        fail("model", f"unknown model {config.model!r}; choose one of {', '.join(MODEL_NAMES)}")
    if config.optimizer not in OPTIMIZERS:
        fail("optimizer", f"unknown optimizer {config.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not config.workdir:
        fail("workdir", "must not be empty")
    for name in ("steps", "batch_size", "frames", "num_train", "num_val", "num_prediction_images"):
        if getattr(config, name) < 1:
            fail(name, f"must be positive, got {getattr(config, name)}")
    if config.burn_in < 0:
        fail("burn_in", f"must not be negative, got {config.burn_in}")
    if config.eval_every < 0:
        fail("eval_every", f"must be 0 (validate at the end only) or positive, got {config.eval_every}")
    if config.max_val_images is not None and config.max_val_images < 1:
        fail("max_val_images", f"must be positive, got {config.max_val_images}")
    if config.lr <= 0:
        fail("lr", f"must be positive, got {config.lr}")
    if config.aux_weight < 0:
        fail("aux_weight", f"must not be negative, got {config.aux_weight}")
    for name in ("crop", "image_size"):
        size = getattr(config, name)
        if len(size) != 2 or min(size) < 32:
            fail(name, f"must be HxW with both at least 32, got {cli.format_size(size)}")
    if config.dataset == "synthetic" and not config.data_dir:
        if config.num_train < config.batch_size:
            fail("num_train", f"{config.num_train} training images are fewer than one batch of {config.batch_size}")
        if any(c > s for c, s in zip(config.crop, config.image_size)):
            fail("crop", f"{config.crop} is larger than the synthetic images {config.image_size} (--image_size)")


def equivalent_command(config):
    """The `experiments/quickstart.py` command line giving `config` (flags that differ from the defaults)."""
    return shlex.join(["python", "experiments/quickstart.py", *cli.command_args(config)])


# ------------------------------------------------------------------------------------------------------------ stages


class _Stages:
    """Prints a banner per stage and records its wall time."""

    def __init__(self, log):
        self.log = log
        self.seconds = {}

    @contextlib.contextmanager
    def __call__(self, name, title):
        index = STAGES.index(name) + 1
        self.log(f"\n==> [{index}/{len(STAGES)}] {title}")
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        self.log(f"    {name} done in {self.seconds[name]:.1f} s")


def _clean(workdir, log):
    """Deletes what the quickstart writes in `workdir` (and nothing else)."""
    for name in (DATA_FOLDER, RUN_FOLDER, SAVED_MODEL_FOLDER, *REPORT_FILES):
        path = os.path.join(workdir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        else:
            continue
        log(f"    --fresh: removed {path}")


def _stamp_text(value):
    return cli.format_size(value) if isinstance(value, list) else str(value)


def _prepare_data(config, log):
    """Generates or reuses the synthetic city, or checks a given dataset.

    Returns:
        (the data-stage record, the first `num_prediction_images` val images and labels as numpy arrays).
    """
    record = {"dataset": config.dataset}
    if config.data_dir:
        data_dir, record["generated"] = config.data_dir, False
    else:
        data_dir, record["generated"] = os.path.join(config.workdir, DATA_FOLDER), True
        settings = dict(num_train=config.num_train, num_val=config.num_val, image_size=list(config.image_size),
                        seed=config.seed)
        stamp_path = os.path.join(data_dir, DATA_STAMP)
        stamp = None
        if os.path.exists(stamp_path):
            with open(stamp_path) as f:
                stamp = json.load(f)
        if stamp == settings:
            log(f"    reusing the synthetic city in {data_dir} (same settings)")
            record["reused"] = True
        else:
            if stamp is not None and os.path.exists(os.path.join(config.workdir, RUN_FOLDER, "config.json")):
                changed = ", ".join(f"--{k}={_stamp_text(stamp.get(k))} (now {_stamp_text(v)})"
                                    for k, v in settings.items() if stamp.get(k) != v)
                raise QuickstartError(
                    f"--fresh: {config.workdir} holds a run trained on a synthetic city generated with {changed}; "
                    "pass --fresh to start over or choose another --workdir"
                )
            shutil.rmtree(data_dir, ignore_errors=True)  # Ours: an older or half-written city.
            log(f"    generating {config.num_train} train + {config.num_val} val images of "
                f"{config.image_size[0]}x{config.image_size[1]} in {data_dir}")
            data.generate_synthetic_city(data_dir, num_train=config.num_train, num_val=config.num_val,
                                         image_size=config.image_size, seed=config.seed)
            with open(stamp_path, "w") as f:
                json.dump(settings, f)
            record["reused"] = False
    try:
        train_examples = data.list_examples(config.dataset, data_dir, "train")
        val_examples = data.list_examples(config.dataset, data_dir, "val")
    except (data.DataError, FileNotFoundError) as error:
        raise QuickstartError(f"--data_dir: no usable {config.dataset} train and val splits under {data_dir}: "
                              f"{error}") from error
    if len(train_examples) < config.batch_size:
        raise QuickstartError(f"--batch_size: {data_dir} has {len(train_examples)} training images, fewer than "
                              f"one batch of {config.batch_size}")
    record.update(data_dir=data_dir, num_train=len(train_examples), num_val=len(val_examples))
    images, labels = _val_samples(config, data_dir, config.num_prediction_images)
    record["image_size"] = [int(images.shape[1]), int(images.shape[2])]
    log(f"    {record['num_train']} train / {record['num_val']} val images of "
        f"{record['image_size'][0]}x{record['image_size'][1]} under {data_dir}")
    return record, images, labels


def _train_config(config, data_dir):
    return TrainConfig(
        model=config.model, dataset=config.dataset, data_dir=data_dir, workdir=os.path.join(config.workdir, RUN_FOLDER),
        steps=config.steps, epochs=None, batch_size=config.batch_size, crop=config.crop, optimizer=config.optimizer,
        lr=config.lr, aux_weight=config.aux_weight, seed=config.seed, cache=True, eval_every=config.eval_every,
        eval_batch_size=1, eval_max_images=config.max_val_images, checkpoint_every=max(config.eval_every, 50),
        keep_checkpoints=2, num_prediction_images=2, log_every=10,
        allow_changes=True,  # A larger --steps continues the run (recorded in its config_changes.jsonl).
    )


def _train(train_config, log):
    run = RunDir(train_config.workdir)
    start = checkpoints.steps_done(run.checkpoint_dir)
    try:
        run.check_resume(train_config, start)  # The training loop's own check, before any work is done.
    except RunRecordError as error:
        raise QuickstartError(f"--fresh: {error} (or pass --fresh to start over)") from None
    if start >= train_config.steps:
        log(f"    reusing the finished run in {train_config.workdir} (step {start}); pass --fresh to retrain")
    elif start:
        log(f"    resuming {train_config.workdir} from step {start} of {train_config.steps}")
    else:
        every = f"every {train_config.eval_every} steps" if train_config.eval_every else "at the end"
        log(f"    {train_config.steps} steps of {train_config.batch_size} crops of "
            f"{train_config.crop[0]}x{train_config.crop[1]}, validating {every}")
    result = train(train_config)
    return result, {"start_step": start, "step": result.step, "total_steps": result.total_steps,
                    "completed": result.completed, "workdir": train_config.workdir}


def _any_size(model, name, info):
    """The trained model (built at the crop size) as a model of any input size with the same weights."""
    if isinstance(model, SegmentationModel):
        return model if tuple(model.input_shape[1:3]) == (None, None) else model.rebuild(input_shape=(None, None, 3))
    any_size = build_model(name, **dataset_recipe(info))  # A plain Keras model: rebuilt from the run's recipe.
    copy_weights_by_name(model, any_size)
    return any_size


def _val_samples(config, data_dir, count):
    """The first `count` val (images float32 [N, H, W, 3], labels [N, H, W]) as numpy arrays (at least one)."""
    dataset = data.make_dataset(config.dataset, data_dir, "val", training=False, batch_size=1)
    images, labels = [], []
    for image, label in dataset.take(max(count, 1)):
        images.append(np.asarray(image)[0])
        labels.append(np.asarray(label)[0])
    return np.stack(images), np.stack(labels)


def _fold_check(model, image):
    """Folds `model` and returns (folded model, record with the max abs logit difference on `image`)."""
    folded = fold_batch_norm(model)
    batch = image[None].astype(np.float32)
    reference = np.asarray(model(batch, training=False))
    logits = np.asarray(folded(batch, training=False))
    difference = float(np.max(np.abs(reference - logits)))
    batch_norms = sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers)
    record = {
        "max_abs_logit_difference": difference,
        "tolerance": FOLD_TOLERANCE,
        "passed": difference < FOLD_TOLERANCE,
        "max_abs_logit": float(np.max(np.abs(reference))),
        # float32 round-off is about 1e-7 of the largest logit: a barely trained model (logits in the hundreds) can
        # fail the absolute tolerance with a correct fold; this ratio tells the two apart.
        "relative_difference": difference / max(float(np.max(np.abs(reference))), 1e-12),
        "batch_norms_folded": int(batch_norms),
        "batch_norms_left": int(sum(type(layer).__name__ == "BatchNormalization" for layer in folded.layers)),
    }
    return folded, record


def _export_check(model, image, path):
    """Exports `model` (folded by the export) to a SavedModel at `path` and checks it on the uint8 `image` in a fresh
    process against the Keras model (`contextnet_tf.deploy.export_check.verify_export`: its tolerance, its label
    agreement)."""
    shutil.rmtree(path, ignore_errors=True)
    export.export(model, path, "saved_model")
    uint8 = np.clip(np.round(image), 0, 255).astype(np.uint8)[None]
    return export_check.verify_export(model, path, "saved_model", [uint8])


def _export_text(exported):
    sizes = ", ".join(cli.format_size(size) for size in exported["images"])
    text = (f"reloaded in a fresh process and run on a uint8 {sizes} val image, its labels agree with the Keras "
            f"model's on {100 * exported['label_agreement']:.2f}% of pixels")
    if exported.get("max_abs_diff") is not None:
        text += f", max abs probability difference {exported['max_abs_diff']:.1e}"
        if exported.get("tolerance") is not None:
            text += f" (tolerance {exported['tolerance']:.0e})"
    return text


def _seconds(value):
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min ({value:.0f} s)"


def write_report(summary, metrics, benchmark_table, path):
    """Writes report.md from the `run` summary, the evaluation metrics and the benchmark markdown table."""
    config, data_record, training = summary["config"], summary["data"], summary["training"]
    fold, exported = summary["folding"], summary["export"]
    size = data_record["image_size"]
    source = ("generated" if not data_record.get("reused") else "reused, generated earlier") \
        if data_record["generated"] else "given with --data_dir"
    if training["start_step"] >= training["total_steps"]:
        trained = f"{training['step']} steps (reused a finished run; no training in this invocation)"
    elif training["start_step"]:
        trained = f"{training['step']} steps (resumed from step {training['start_step']})"
    else:
        trained = f"{training['step']} steps"
    miou = metrics["miou"]
    produced = "Produced by" if summary["command_given"] else "Produced from Python by the equivalent of"
    lines = [
        "# Quick start report",
        "",
        f"{produced} `{summary['command']}` on {summary['date']} ({summary['environment']['cpu']}, "
        f"{summary['environment']['device']}, TensorFlow {summary['environment']['versions'].get('tensorflow')}, "
        f"Keras {summary['environment']['versions'].get('keras')}; CPU load average "
        f"{summary['load_average']:.1f} on {summary['environment']['cpu_count']} cores at the start).",
        "",
        "## Summary",
        "",
        "| | |",
        "|---|---|",
        f"| data | {data_record['dataset']}: {data_record['num_train']} train / {data_record['num_val']} val images "
        f"of {size[0]}x{size[1]} in `{data_record['data_dir']}` ({source}) |",
        f"| model | {config['model']}, {summary['params']:,} trainable parameters |",
        f"| training | {trained}: batch {config['batch_size']}, crops {config['crop'][0]}x{config['crop'][1]}, "
        f"{config['optimizer']} with a poly schedule from lr {config['lr']:g}, auxiliary loss weight "
        f"{config['aux_weight']:g}, seed {config['seed']} |",
        f"| val mIoU | **{'n/a' if miou is None else f'{100 * miou:.2f}%'}** over {metrics['num_images']} images "
        f"(pixel accuracy {100 * (metrics['pixel_accuracy'] or 0):.2f}%"
        + (f", category mIoU {100 * metrics['category_miou']:.2f}%" if metrics.get("category_miou") is not None
           else "") + ") |",
        f"| batch-norm folding | {fold['batch_norms_folded']} batch norms folded; max abs logit difference "
        f"{fold['max_abs_logit_difference']:.2e} on a val image (tolerance {fold['tolerance']:.0e}; "
        f"{fold['relative_difference']:.1e} of the largest logit, {fold['max_abs_logit']:.3g}): "
        f"**{'passed' if fold['passed'] else 'FAILED'}** |",
        f"| SavedModel | `{exported['path']}`; {_export_text(exported)}: "
        f"**{'passed' if exported['passed'] else 'FAILED'}** |",
        f"| run folder | `{training['workdir']}` (config, metrics.jsonl, TensorBoard, checkpoints, best.keras, "
        "final.keras) |",
        f"| wall time | {_seconds(sum(summary['stage_seconds'].values()))} for the seven stages (Python and "
        "TensorFlow start-up before them not included) |",
        "",
        "## Wall time per stage",
        "",
        "| stage | wall time |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {_seconds(seconds)} |" for name, seconds in summary["stage_seconds"].items()]
    lines += [f"| **total** | **{_seconds(sum(summary['stage_seconds'].values()))}** |", ""]
    lines += [
        "## Validation: per-class IoU",
        "",
        f"{metrics['num_images']} val images at full resolution, single scale, no flip "
        "(`contextnet_tf.evaluation.metrics.evaluate`; a class absent from labels and predictions has no IoU, n/a).",
        "",
        iou_table(metrics),
        "## Training curve",
        "",
        "![training curve](training_curve.png)",
        "",
        "## Predictions",
        "",
        "Val images: image | ground truth | prediction, in the dataset's palette (void is black).",
        "",
        "![predictions](predictions.png)",
        "",
        "## Benchmark",
        "",
        f"End to end (uint8 image on the host in, labels on the host out), batch 1, at {size[0]}x{size[1]}; "
        f"{summary['benchmark']['burn_in']} burn-in then {summary['benchmark']['frames']} timed frames per path, "
        "interleaved. `x folded` is fps relative to the folded model. Few frames: a rough number; "
        "experiments/benchmark.py runs the papers' 100 + 100 protocol.",
        "",
        benchmark_table,
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        "| `metrics.json` | the evaluation (`contextnet_tf.evaluation.metrics` format: mIoU, class IoU, confusion matrix) |",
        "| `summary.json` | every number of this report |",
        "| `benchmark.json`, `benchmark.md` | the benchmark record and table |",
        "| `training_curve.png`, `predictions.png` | the figures above |",
        f"| `{SAVED_MODEL_FOLDER}/` | the folded model as a SavedModel: `serving_default` takes uint8 (batch, h, w, 3) "
        "of any size and returns uint8 labels (batch, h, w); `probabilities` returns the softmax |",
        f"| `{RUN_FOLDER}/` | the training run folder |",
        "",
    ]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


# --------------------------------------------------------------------------------------------------------------- run


def run(config, command=None, log=print):
    """Runs the whole quick start (see the module docstring) and writes the report folder.

    Args:
        config: a `QuickstartConfig`.
        command: the command line to record in the report (default: the equivalent
            `experiments/quickstart.py` command, `equivalent_command`).
        log: called with each progress line.

    Returns:
        The summary dict also written to ``{workdir}/summary.json``: ``config``, ``command``, ``data``,
        ``training``, ``params``, ``miou``, ``folding``, ``benchmark``, ``export``, ``stage_seconds``, ``passed``
        (folding and export checks) and ``report`` (the path of report.md).

    Raises:
        QuickstartError: a bad setting, or a workdir holding an incompatible earlier quick start (the message names
            the flag to change).
    """
    check_config(config)
    command_given = command is not None
    command = command or equivalent_command(config)
    workdir = config.workdir
    stage = _Stages(log)
    load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    log(f"Quick start: {config.model} on {config.dataset}, report folder {workdir}")
    if config.fresh:
        _clean(workdir, log)
    os.makedirs(workdir, exist_ok=True)
    info = data.get_info(config.dataset)

    with stage("data", "Data" + (" (synthetic city)" if config.dataset == "synthetic" else "")):
        data_record, images, labels = _prepare_data(config, log)
    data_dir = data_record["data_dir"]

    train_config = _train_config(config, data_dir)
    with stage("train", f"Training {config.model} ({config.steps} steps)"):
        result, training = _train(train_config, log)
    height, width = data_record["image_size"]
    model = _any_size(result.model, config.model, info)
    sized = model.rebuild(input_shape=(height, width, 3))  # Static shapes for folding, timing and export.

    with stage("evaluate", "Evaluating on the val split"):
        num_val = data_record["num_val"]
        max_images = min(num_val, config.max_val_images or num_val)
        val_dataset = data.make_dataset(config.dataset, data_dir, "val", training=False, batch_size=1)
        metrics = evaluation.evaluate(model, val_dataset, info, max_images=max_images, verbose=True)
        metrics.update(model=config.model, split="val", step=training["step"], run=training["workdir"])
        evaluation.write_json(metrics, os.path.join(workdir, "metrics.json"))
        log(evaluation.format_table(metrics))

    with stage("fold", "Folding batch norms"):
        folded, fold = _fold_check(sized, images[0])
        log(f"    folded {fold['batch_norms_folded']} batch norms; max |folded - unfolded| logit difference on a val "
            f"image: {fold['max_abs_logit_difference']:.2e} ({'passed' if fold['passed'] else 'FAILED'}, "
            f"tolerance {FOLD_TOLERANCE:g}; {fold['relative_difference']:.1e} of the largest logit, "
            f"{fold['max_abs_logit']:.3g})")

    with stage("benchmark", f"Benchmark: end to end, batch 1, {height}x{width}, unfolded vs folded"):
        report = speed.run_benchmark(
            {f"{height}x{width}": sized}, paths=("keras_unfolded", "keras_folded"), modes=("end_to_end",),
            frames=config.frames, burn_in=config.burn_in, log=lambda line: log("    " + line),
        )
        report["model"] = config.model
        with open(os.path.join(workdir, "benchmark.json"), "w") as f:
            json.dump(report, f, indent=2)
        table = speed.markdown_table(report)
        with open(os.path.join(workdir, "benchmark.md"), "w") as f:
            f.write(table)
        log(table)

    with stage("export", "Exporting the folded model as a SavedModel"):
        exported = _export_check(model, images[0], os.path.join(workdir, SAVED_MODEL_FOLDER))
        log(f"    wrote {exported['path']}; {_export_text(exported)} ({'passed' if exported['passed'] else 'FAILED'})")

    with stage("report", "Writing the report"):
        predicted = prediction.Predictor(model).labels(images)
        plots.plot_training_curve(os.path.join(training["workdir"], "metrics.jsonl"),
                            os.path.join(workdir, "training_curve.png"), metrics["miou"], training["step"])
        plots.plot_predictions(images, labels, predicted, info, os.path.join(workdir, "predictions.png"))
        fps = {r["path"]: r["fps"] for r in report["results"]}
        summary = {
            "config": dataclasses.asdict(config),
            "command": command,
            "command_given": command_given,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "environment": environment(),
            "load_average": load_average,
            "data": data_record,
            "training": training,
            "params": count_trainable_params(model),
            "miou": metrics["miou"],
            "pixel_accuracy": metrics["pixel_accuracy"],
            "folding": fold,
            "benchmark": {"burn_in": config.burn_in, "frames": config.frames, "resolution": f"{height}x{width}",
                          "fps": fps},
            "export": exported,
            "stage_seconds": stage.seconds,  # The same dict: complete once the report stage ends.
            "passed": bool(fold["passed"] and exported["passed"]),
            "report": os.path.join(workdir, "report.md"),
        }
    # Written after the last stage so that they hold every stage time (writing them takes milliseconds).
    write_report(summary, metrics, table, summary["report"])
    with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    total = sum(stage.seconds.values())
    log("\n" + "  ".join(f"{name} {seconds:.0f}s" for name, seconds in stage.seconds.items()) + f"  total {total:.0f}s")
    log(f"val mIoU {100 * (metrics['miou'] or 0):.2f}%; folding check {'passed' if fold['passed'] else 'FAILED'}; "
        f"SavedModel check {'passed' if exported['passed'] else 'FAILED'}")
    log(f"Report: {summary['report']}")
    return summary
