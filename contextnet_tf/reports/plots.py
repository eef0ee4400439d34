"""The report figures: a run's training curve and a grid of predictions (quick start, model cards)."""

import json
import os

import numpy as np

from contextnet_tf import data


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_metrics(path):
    """(train records, val records) of a run's metrics.jsonl, each a list of dicts sorted by step."""
    train_records, val_records = [], []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    (val_records if record.get("split") == "val" else train_records).append(record)
    return sorted(train_records, key=lambda r: r["step"]), sorted(val_records, key=lambda r: r["step"])


def plot_training_curve(metrics_path, out_path, final_miou=None, final_step=None, val_metrics_path=None,
                        val_label="val"):
    """training_curve.png: train loss (total and cross-entropy) and val mIoU against the step.

    `val_metrics_path` takes the mIoU curve from another run's ``metrics.jsonl`` (a published model trained on every
    frame has no validation of its own: its card shows its selection run's held-out curve), named `val_label`.
    """
    plt = _pyplot()
    train_records, val_records = read_metrics(metrics_path)
    if val_metrics_path:
        val_records = read_metrics(val_metrics_path)[1]
    figure, (loss_axis, miou_axis) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in train_records]
    loss_axis.plot(steps, [r.get("loss") for r in train_records], label="total loss (with aux and L2)")
    if train_records and "ce" in train_records[0]:
        loss_axis.plot(steps, [r.get("ce") for r in train_records], label="cross-entropy (main head)")
    loss_axis.set(xlabel="step", ylabel="train loss", title="Training loss")
    loss_axis.grid(alpha=0.3)
    loss_axis.legend()
    val_steps = [r["step"] for r in val_records if r.get("miou") is not None]
    val_miou = [100 * r["miou"] for r in val_records if r.get("miou") is not None]
    miou_axis.plot(val_steps, val_miou, "o-", label=f"{val_label} mIoU during training")
    if final_miou is not None and final_step is not None:
        miou_axis.plot([final_step], [100 * final_miou], "r*", markersize=12, label="final evaluation")
    miou_axis.set(xlabel="step", ylabel="mIoU (%)", title=f"{val_label} mIoU")
    miou_axis.set_ylim(bottom=0)
    miou_axis.grid(alpha=0.3)
    miou_axis.legend()
    figure.tight_layout()
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path


def plot_predictions(images, labels, predictions, info, out_path):
    """predictions.png: one row per image, image | ground truth | prediction in the dataset's palette, with a legend
    of the classes that appear."""
    from matplotlib.patches import Patch

    plt = _pyplot()
    rows = len(images)
    height, width = images.shape[1:3]
    panel_width = 4.0
    panel_height = panel_width * height / width
    figure, axes = plt.subplots(rows, 3, figsize=(3 * panel_width, rows * panel_height + 0.4), squeeze=False)
    for row in range(rows):
        panels = (np.clip(images[row], 0, 255).astype(np.uint8), data.colorize(labels[row], info),
                  data.colorize(predictions[row], info))
        for column, (panel, title) in enumerate(zip(panels, ("image", "ground truth", "prediction"))):
            axis = axes[row, column]
            axis.imshow(panel)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title)
    present = sorted(set(np.unique(labels).tolist()) | set(np.unique(predictions).tolist()))
    handles = [Patch(color=info.palette[c] / 255.0, label=info.class_names[c]) for c in present if c < info.num_classes]
    if any(c == info.ignore_label for c in present):
        handles.append(Patch(color="black", label="ignored (void)"))
    figure.tight_layout(h_pad=0.3, w_pad=0.3)
    figure.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 7) or 1,
                  fontsize=9, frameon=False)
    figure.savefig(out_path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return out_path
