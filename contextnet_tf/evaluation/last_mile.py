"""The last mile of inference: full-resolution labels from the 1/8-resolution logits, never making full-resolution
logits.

Both networks end in a bilinear upsampling of their 1/8-resolution logits to the input size (the layer ``logits``,
half-pixel centres), and the labels are the argmax of that. At 1024x2048 the upsampled logits are 2 million pixels x
19 classes: resizing them and taking their argmax cost 19% (Fast-SCNN) and 29% (cn14) of a folded network's frame on
this CPU (docs/benchmarks.md, `experiments/benchmark_last_mile.py`).
`upsample_argmax` gives the same labels from the 1/8 logits directly.

How. With an even integer factor ``f`` (8 here) and half-pixel centres, every output pixel interpolates between the
same 2x2 low-resolution neighbours as the other ``f x f`` pixels of its *cell* (cell ``(k, l)`` of the edge-padded
low-resolution grid covers output rows ``f*k - f/2 .. f*k + f/2 - 1``, with weights ``t = (r + 0.5) / f``; padding
the edges by repetition is exactly the resize's clamping). A bilinear weight is a convex combination, so when the
four corners of a cell have the same argmax ``c`` then ``z_c - z_d`` is a convex combination of positive numbers for
every other class ``d``: the whole cell is ``c``. Only the cells whose corners disagree (near class boundaries)
are interpolated, each for its ``f*f`` pixels and all classes, and their argmax
written into the label map. The result equals ``argmax(resize(logits))`` except where two classes tie to float32
rounding (the two computations round differently): `tests/test_evaluation_last_mile.py` checks it on real frames.

Other sizes (a factor that is not an even integer, e.g. an input side that is not a multiple of 8) take the plain
path, ``argmax(tf.image.resize(...))``. The functions are TensorFlow (the evaluation and deployment layers'), and
convert to TFLite builtins (WHERE, GATHER_ND, SCATTER_ND).
"""

import numpy as np
import tensorflow as tf

FACTOR = 8


def eighth_logits_model(model):
    """The sub-model of a network of this package whose output is its logits *before* the final upsampling.

    The networks end in the `Resize` layer named ``logits`` (``Resize()([low_resolution_logits, image])``); the
    sub-model shares the layers and weights. An ``aux`` model's heads are dropped.
    """
    import keras

    try:
        layer = model.get_layer("logits")
    except ValueError:
        raise ValueError(f"{model.name} has no layer named 'logits' (the final upsampling of this package's "
                         "networks), so its 1/8-resolution logits cannot be taken") from None
    return keras.Model(model.inputs, layer.input[0], name=f"{model.name}_eighth_logits")


def plain_upsample_argmax(logits, size):
    """``argmax(tf.image.resize(logits, size))`` as int32 [B, H, W]: today's path, the reference."""
    return tf.argmax(tf.image.resize(tf.cast(logits, tf.float32), size, method="bilinear"), axis=-1,
                     output_type=tf.int32)


def _cell_weights(factor):
    """[factor * factor, 4] bilinear weights of a cell's pixels on its corners (top-left, bottom-left, top-right,
    bottom-right); row-major over the cell's pixels."""
    t = (np.arange(factor) + 0.5) / factor
    rows, cols = np.meshgrid(t, t, indexing="ij")
    rows, cols = rows.ravel(), cols.ravel()
    return np.stack([(1 - rows) * (1 - cols), rows * (1 - cols), (1 - rows) * cols, rows * cols], axis=1).astype(
        np.float32)


def _corners_agree(winners):
    """(top-left corner's class, whether all four corners agree) of every cell of the edge-padded winner grid."""
    top_left, bottom_left = winners[:, :-1, :-1], winners[:, 1:, :-1]
    top_right, bottom_right = winners[:, :-1, 1:], winners[:, 1:, 1:]
    return top_left, (top_left == bottom_left) & (top_left == top_right) & (top_left == bottom_right)


def boundary_share(logits):
    """The share of cells that `fused_upsample_argmax` interpolates (their four corners disagree), over the
    ``(h + 1) x (w + 1)`` cells of the edge-padded grid of `logits` [B, h, w, C]: what the ``cls`` head's last mile
    costs on this input beyond the network (0: one class everywhere; 1: every cell interpolated). A float."""
    padded = tf.pad(tf.cast(logits, tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    _, agree = _corners_agree(tf.argmax(padded, axis=-1, output_type=tf.int32))
    return float(1.0 - tf.reduce_mean(tf.cast(agree, tf.float32)))


def fused_upsample_argmax(logits, factor=FACTOR, output_type=tf.int32):
    """The labels [B, h*factor, w*factor] of the bilinearly upsampled `logits` [B, h, w, C] (module docstring),
    computing the upsampled logits only in the cells whose corners disagree.

    Args:
        logits: float [B, h, w, C].
        factor: an even integer.
        output_type: dtype of the labels (``tf.uint8`` saves the exports a pass); the full-resolution work is done
            in uint8 when there are at most 256 classes.
    """
    if factor % 2 or factor < 2:
        raise ValueError(f"factor must be an even integer, got {factor}")
    logits = tf.cast(logits, tf.float32)
    num_classes = logits.shape[-1]
    work_type = tf.uint8 if num_classes is not None and num_classes <= 256 else tf.int32
    padded = tf.pad(logits, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")  # repeats the edge rows/columns
    winners = tf.argmax(padded, axis=-1, output_type=tf.int32)  # [B, h + 2, w + 2]
    top_left, agree = _corners_agree(winners)  # [B, h + 1, w + 1]
    cells = tf.where(~agree)  # int64 [N, 3]: (batch, k, l) of the cells to interpolate
    corners = tf.stack(
        [tf.gather_nd(padded, cells + offset) for offset in ([0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1])], axis=2
    )  # [N, C, 4]
    weights = tf.constant(_cell_weights(factor))  # [f*f, 4]
    interpolated = tf.reshape(tf.matmul(tf.reshape(corners, [-1, 4]), weights, transpose_b=True),
                              [-1, num_classes, factor * factor])  # [N, C, f*f]
    cell_labels = tf.argmax(interpolated, axis=1, output_type=tf.int32)  # [N, f*f]
    shape = tf.shape(agree, out_type=tf.int64)
    scattered = tf.scatter_nd(cells, cell_labels, tf.concat([shape, [factor * factor]], axis=0))  # 0 where agreed
    # Agreeing cells take their corners' class; an addition, not a select (TFLite's builtins lack a uint8 select).
    agreed = top_left * tf.cast(agree, tf.int32)
    labels = tf.cast(scattered + agreed[..., None], work_type)  # [B, h + 1, w + 1, f*f]
    batch, height, width = shape[0], shape[1], shape[2]
    labels = tf.reshape(labels, tf.stack([batch, height, width, factor, factor]))
    labels = tf.reshape(tf.transpose(labels, [0, 1, 3, 2, 4]), tf.stack([batch, height * factor, width * factor]))
    half = factor // 2
    labels = labels[:, half:half + (height - 1) * factor, half:half + (width - 1) * factor]
    return labels if output_type == work_type else tf.cast(labels, output_type)


def upsample_argmax(logits, size, output_type=tf.int32):
    """Labels [B, H, W] equal to ``argmax(tf.image.resize(logits, size))`` (ties aside): the fused path when ``size``
    is exactly `FACTOR` times the logits' size, the plain path otherwise. Static or run-time sizes."""
    logits = tf.cast(logits, tf.float32)
    static = logits.shape[1:3].as_list()

    def plain():
        return tf.cast(plain_upsample_argmax(logits, size), output_type)

    if isinstance(size, (tuple, list)) and all(isinstance(v, int) for v in size) and None not in static:
        if tuple(size) == (static[0] * FACTOR, static[1] * FACTOR):
            return fused_upsample_argmax(logits, output_type=output_type)
        return plain()
    size = tf.cast(tf.convert_to_tensor(size), tf.int32)
    exact = tf.reduce_all(tf.equal(size, tf.shape(logits)[1:3] * FACTOR))
    return tf.cond(exact, lambda: fused_upsample_argmax(logits, output_type=output_type), plain)
