"""The model table: our parameter counts and GMACs beside the papers' numbers (README, docs, notebooks)."""

from contextnet_tf import cli, data
from contextnet_tf.models import build_model, profiling
from contextnet_tf.reports.references import PAPER_PARAMS

def parse_resolution(text):
    """``"1024x2048"`` -> (1024, 2048): `contextnet_tf.cli.parse_size` (kept for experiments/export.py)."""
    return cli.parse_size(text)


def model_rows(names, resolutions=((1024, 2048),), num_classes=None):
    """One dict per model: name, params, paper_params, params_ratio, gmacs (per 'HxW'), layer counts.

    `num_classes` defaults to the papers' dataset's (`data.PAPERS_DATASET`, Cityscapes: 19).
    """
    num_classes = num_classes or data.get_info(data.PAPERS_DATASET).num_classes
    rows = []
    for name in names:
        row = dict(name=name, gmacs={})
        for height, width in resolutions:
            model = build_model(name, (height, width, 3), num_classes)
            row["gmacs"][f"{height}x{width}"] = round(profiling.count_macs(model) / 1e9, 3)
        row["params"] = profiling.count_trainable_params(model)
        row["paper_params"] = PAPER_PARAMS.get(name)
        if row["paper_params"]:
            row["params_ratio"] = round(row["params"] / row["paper_params"], 4)
        if name.startswith("cn"):
            row["context_layers"] = profiling.paper_layer_count(model, "context_")
            row["detail_layers"] = profiling.paper_layer_count(model, "detail_")
        rows.append(row)
    return rows


def markdown_table(rows, resolutions):
    """Renders `model_rows` output as a markdown table."""
    res_keys = [f"{h}x{w}" for h, w in resolutions]
    header = "| model | params (ours) | params (paper) | ours / paper | " + " | ".join(
        f"GMACs @ {k}" for k in res_keys
    ) + " |"
    lines = [header, "|" + "---|" * (4 + len(res_keys))]
    for row in rows:
        paper = f"{row['paper_params']:,}" if row.get("paper_params") else "-"
        ratio = f"{row['params_ratio']:.3f}" if row.get("params_ratio") else "-"
        gmacs = " | ".join(f"{row['gmacs'][k]:.2f}" for k in res_keys)
        lines.append(f"| {row['name']} | {row['params']:,} | {paper} | {ratio} | {gmacs} |")
    return "\n".join(lines)
