"""The per-class IoU table (markdown) of every report: quick start, model cards and the studies' notebooks."""


def _pct(value, digits):
    return "n/a" if value is None else f"{100 * value:.{digits}f}"


def _header(label):
    return "IoU (%)" if not label else f"{label} IoU (%)"


def iou_table(columns, digits=2, row_labels=None, categories=True):
    """Markdown tables of per-class (and per-category) IoU, in percent, one column per evaluation.

    Args:
        columns: {column label: metrics} with metrics in `contextnet_tf.evaluation.metrics.evaluate`'s format
            (``class_iou``, ``miou``, optionally ``category_iou`` and ``category_miou``); a single metrics dict is one
            column labelled ``IoU (%)``. Every column must have the same classes.
        digits: decimals of the percentages.
        row_labels: {header: {class name: text}}: extra columns after the class name (e.g. a class's group).
        categories: also write the category table when the metrics have one.

    Returns:
        The markdown text (ending with a newline): a row per class, then the bold mean (``**mIoU**``); a class
        without an IoU (absent from labels and predictions) shows ``n/a``.
    """
    if "class_iou" in columns:
        columns = {"": columns}
    columns = dict(columns)
    if not columns:
        raise ValueError("iou_table needs at least one metrics column")
    first = next(iter(columns.values()))
    names = list(first["class_iou"])
    for label, metrics in columns.items():
        if list(metrics["class_iou"]) != names:
            raise ValueError(f"column {label!r} has other classes than the first column")
    row_labels = row_labels or {}

    def table(kind, key, mean_key, mean_name):
        rows = list(first[key])
        headers = [kind, *row_labels, *(_header(label) for label in columns)]
        lines = ["| " + " | ".join(headers) + " |", "|---|" + "---|" * len(row_labels) + "---:|" * len(columns)]
        for name in rows:
            cells = [name, *(labels.get(name, "") for labels in row_labels.values())]
            cells += [_pct(metrics[key][name], digits) for metrics in columns.values()]
            lines.append("| " + " | ".join(cells) + " |")
        means = [f"**{_pct(metrics[mean_key], digits)}**" for metrics in columns.values()]
        lines.append("| " + " | ".join([f"**{mean_name}**", *([""] * len(row_labels)), *means]) + " |")
        return lines

    lines = table("class", "class_iou", "miou", "mIoU")
    if categories and all("category_iou" in metrics for metrics in columns.values()):
        lines += [""] + table("category", "category_iou", "category_miou", "category mIoU")
    return "\n".join(lines) + "\n"
