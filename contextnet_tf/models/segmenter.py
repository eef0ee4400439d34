"""`build_model`: the one public entry point to every network variant of both papers."""

from contextnet_tf.models import contextnet
from contextnet_tf.models import fast_scnn

MODEL_NAMES = tuple(fast_scnn.VARIANTS) + tuple(contextnet.VARIANTS)
# ContextNet's single-branch networks (the paper's ensemble study): buildable and trainable by name.
ABLATION_NAMES = tuple(contextnet.ABLATION_VARIANTS)


def build_model(name, input_shape=(1024, 2048, 3), num_classes=19, aux=False, width=1.0):
    """Builds a network by name.

    Args:
        name: one of ``fast_scnn``, ``cn14``, ``cn12``, ``cn18``, ``cn124``, ``cn14-500``, ``cn14-160``, or one of
            `ABLATION_NAMES` (``cn14-context``, ``cn14-detail``: ContextNet's branches alone).
        input_shape: (height, width, 3); any static size, not only multiples of 32.
        num_classes: number of classes of the logits.
        aux: if True the model returns a dict with key ``logits`` plus one key per auxiliary head
            (``aux_ltd``, ``aux_gfe`` for Fast-SCNN; ``aux_context`` for ContextNet).
        width: extra width multiplier on top of the variant's own (2.0 gives the wide network that pruning starts
            from; see the pruning module).

    Returns:
        A `keras.Model` mapping float32 RGB images in [0, 255], shape (batch, H, W, 3), to logits (batch, H, W,
        num_classes), or the aux dict.
    """
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {tuple(input_shape)}")
    if min(input_shape[0], input_shape[1]) < 32:
        raise ValueError(f"input_shape {tuple(input_shape)} is too small: height and width must be at least 32")
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    input_shape = tuple(int(d) for d in input_shape)
    if name in fast_scnn.VARIANTS:
        kwargs = dict(fast_scnn.VARIANTS[name])
        kwargs["width"] = kwargs.get("width", 1.0) * width
        return fast_scnn.build_fast_scnn(input_shape, num_classes, aux, name=_model_name(name), **kwargs)
    if name in contextnet.VARIANTS:
        kwargs = dict(contextnet.VARIANTS[name])
        kwargs["width"] = kwargs.get("width", 1.0) * width
        return contextnet.build_contextnet(input_shape, num_classes, aux, name=_model_name(name), **kwargs)
    if name in contextnet.ABLATION_VARIANTS:
        kwargs = dict(contextnet.ABLATION_VARIANTS[name])
        return contextnet.build_contextnet(input_shape, num_classes, aux, name=_model_name(name), width=width, **kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES + ABLATION_NAMES)}")


def _model_name(name):
    return name.replace("-", "_")
