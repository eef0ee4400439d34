"""`SegmentationModel`: every network of both papers as a Keras model that knows what it is.

`build_model` is the one entry point to every variant. It returns a `SegmentationModel`, a Keras functional model
(the graph of `fast_scnn.build_fast_scnn` or `contextnet.build_contextnet`) whose config is its recipe:

* ``variant`` (``fast_scnn``, ``cn14``, ...), ``num_classes``, ``width`` (the extra width multiplier: 2.0 for the
  wide network pruning starts from, 1.5 and 1.25 for the pruned stages), ``aux`` (auxiliary heads);
* ``input_scale``: the scale the model is meant to run at (1 unless trained for another: the published CamVid
  Fast-SCNN runs on frames resized x2). Prediction, evaluation and every export read it;
* ``dataset``, ``class_names`` and ``palette`` of the dataset it was trained on (None when it was not);
* ``input_shape``: ``(None, None, 3)`` by default: the graph takes its sizes from the input at run time, so one
  model runs at any size (`contextnet_tf.models.layers`).

`model.save(path)` keeps all of it and `load_model(path)` gives it back: nothing downstream reads a model's name or
compares weight shapes to find out what it is. `model.rebuild(**changes)` builds the same recipe with some keys
changed (a static input size, no auxiliary heads) and copies the weights by layer name.
"""

import os
import zipfile

import keras
import numpy as np

from contextnet_tf.models import contextnet, fast_scnn

MODEL_NAMES = tuple(fast_scnn.VARIANTS) + tuple(contextnet.VARIANTS)
# ContextNet's single-branch networks (the paper's ensemble study): buildable and trainable by name.
ABLATION_NAMES = tuple(contextnet.ABLATION_VARIANTS)
# This project's variants, in neither paper (e.g. ``fast_scnn-ibn``): buildable and trainable by name.
OFF_PAPER_NAMES = tuple(fast_scnn.OFF_PAPER)
_FAST_SCNN_VARIANTS = {**fast_scnn.VARIANTS, **fast_scnn.OFF_PAPER}
ANY_SIZE = (None, None, 3)


def _network(variant, input_shape, num_classes, aux, width):
    """The functional graph (a plain `keras.Model`) of a variant."""
    if variant in _FAST_SCNN_VARIANTS:
        kwargs = dict(_FAST_SCNN_VARIANTS[variant])
        kwargs["width"] = kwargs.get("width", 1.0) * width
        return fast_scnn.build_fast_scnn(input_shape, num_classes, aux, name=_model_name(variant), **kwargs)
    if variant in contextnet.VARIANTS:
        kwargs = dict(contextnet.VARIANTS[variant])
        kwargs["width"] = kwargs.get("width", 1.0) * width
        return contextnet.build_contextnet(input_shape, num_classes, aux, name=_model_name(variant), **kwargs)
    if variant in contextnet.ABLATION_VARIANTS:
        kwargs = dict(contextnet.ABLATION_VARIANTS[variant])
        return contextnet.build_contextnet(
            input_shape, num_classes, aux, name=_model_name(variant), width=width, **kwargs
        )
    names = MODEL_NAMES + ABLATION_NAMES + OFF_PAPER_NAMES
    raise ValueError(f"unknown model {variant!r}; choose one of {', '.join(names)}")


def _model_name(name):
    return name.replace("-", "_")


def _check_input_shape(input_shape):
    input_shape = tuple(None if d is None else int(d) for d in input_shape)
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape must be (height, width, 3), got {input_shape}")
    known = [d for d in input_shape[:2] if d is not None]
    if known and min(known) < 32:
        raise ValueError(f"input_shape {input_shape} is too small: height and width must be at least 32")
    return input_shape


@keras.saving.register_keras_serializable(package="contextnet_tf")
class SegmentationModel(keras.Model):
    """A network of this package with its recipe in its config (see the module docstring).

    Args:
        variant: a name in `MODEL_NAMES`, `ABLATION_NAMES` or `OFF_PAPER_NAMES`.
        num_classes: classes of the logits.
        width: extra width multiplier on top of the variant's own.
        aux: return ``{"logits", <aux heads>}`` instead of the logits.
        input_scale: the scale the model is meant to run at (> 0).
        dataset, class_names, palette: the dataset it was trained on; `class_names` must have `num_classes` names
            and `palette` `num_classes` RGB triples.
        input_shape: (height, width, 3), None for a size known only at run time.
        name: the Keras model name (default: the variant, ``-`` replaced by ``_``).

    Calling it on float32 RGB images in [0, 255], (batch, H, W, 3), gives logits (batch, H, W, num_classes) at the
    input's own size: `input_scale` is applied by the callers that run the model as measured (`Predictor`,
    `evaluate`, the exports), not by the graph.
    """

    def __init__(
        self,
        variant,
        num_classes=19,
        width=1.0,
        aux=False,
        input_scale=1.0,
        dataset=None,
        class_names=None,
        palette=None,
        input_shape=ANY_SIZE,
        name=None,
        **kwargs,
    ):
        num_classes = int(num_classes)
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not float(input_scale) > 0:
            raise ValueError(f"input_scale must be positive, got {input_scale}")
        if not float(width) > 0:
            raise ValueError(f"width must be positive, got {width}")
        input_shape = _check_input_shape(input_shape)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class_names for a model of {num_classes} classes")
        if palette is not None:
            palette = np.asarray(palette, np.int64)
            if palette.shape != (num_classes, 3) or palette.min() < 0 or palette.max() > 255:
                raise ValueError(f"palette must be {num_classes} RGB triples in 0..255, got shape {palette.shape}")
            palette = palette.tolist()
        network = _network(variant, input_shape, num_classes, bool(aux), float(width))
        kwargs.pop("trainable", None)
        super().__init__(inputs=network.input, outputs=network.output, name=name or network.name, **kwargs)
        self.variant = variant
        self.num_classes = num_classes
        self.width = float(width)
        self.aux = bool(aux)
        self.input_scale = float(input_scale)
        self.dataset = dataset
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.palette = palette
        self.recipe_input_shape = input_shape

    def get_config(self):
        return {
            "variant": self.variant,
            "num_classes": self.num_classes,
            "width": self.width,
            "aux": self.aux,
            "input_scale": self.input_scale,
            "dataset": self.dataset,
            "class_names": self.class_names,
            "palette": self.palette,
            "input_shape": list(self.recipe_input_shape),
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def rebuild(self, **changes):
        """The same recipe with `changes` applied (any `get_config` key), with this model's weights by layer name.

        Layers absent from the new model (the auxiliary heads with ``aux=False``) are dropped; every layer of the
        new model must exist here with weights of the same shapes.
        """
        config = {**self.get_config(), **changes}
        rebuilt = SegmentationModel.from_config(config)
        copy_weights_by_name(self, rebuilt)
        return rebuilt


def build_model(
    name,
    input_shape=ANY_SIZE,
    num_classes=19,
    aux=False,
    width=1.0,
    input_scale=1.0,
    dataset=None,
    class_names=None,
    palette=None,
):
    """Builds a network by name, as a `SegmentationModel` carrying its recipe.

    Args:
        name: one of ``fast_scnn``, ``cn14``, ``cn12``, ``cn18``, ``cn124``, ``cn14-500``, ``cn14-160``, or one of
            `ABLATION_NAMES` (``cn14-context``, ``cn14-detail``: ContextNet's branches alone), or one of
            `OFF_PAPER_NAMES` (``fast_scnn-ibn``, ``fast_scnn-ibna``: this project's, in neither paper).
        input_shape: (height, width, 3); ``(None, None, 3)`` (the default) runs at any size, a static size (not only
            multiples of 32, at least 32) fixes the shapes of the graph (needed to count MACs).
        num_classes: number of classes of the logits.
        aux: if True the model returns a dict with key ``logits`` plus one key per auxiliary head
            (``aux_ltd``, ``aux_gfe`` for Fast-SCNN; ``aux_context`` for ContextNet).
        width: extra width multiplier on top of the variant's own (2.0 gives the wide network that pruning starts
            from; see `contextnet_tf.pruning`).
        input_scale, dataset, class_names, palette: recorded in the model's config (see `SegmentationModel`).

    Returns:
        A `SegmentationModel` mapping float32 RGB images in [0, 255], shape (batch, H, W, 3), to logits (batch, H, W,
        num_classes), or the aux dict.
    """
    return SegmentationModel(
        name,
        num_classes=num_classes,
        width=width,
        aux=aux,
        input_scale=input_scale,
        dataset=dataset,
        class_names=class_names,
        palette=palette,
        input_shape=input_shape,
    )


def dataset_recipe(info):
    """The `build_model` keyword arguments that record a dataset (`contextnet_tf.data.DatasetInfo`) in a model."""
    return dict(
        num_classes=info.num_classes,
        dataset=info.name,
        class_names=list(info.class_names),
        palette=np.asarray(info.palette).tolist(),
    )


def load_model(path):
    """Loads a `.keras` file saved from a `SegmentationModel` (or any Keras model of this package).

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: the file exists but is not a readable `.keras` archive (truncated or corrupt), naming it.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path}")
    if os.path.isdir(path) or not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a readable .keras file (a zip archive): corrupt, truncated or another format")
    try:
        return keras.saving.load_model(path, compile=False)
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, IndexError) as error:
        raise ValueError(f"{path} is corrupt or truncated: {type(error).__name__}: {error}") from error


def recipe(model):
    """The recipe (`SegmentationModel.get_config`) of a model, or raise naming what it is not."""
    if not isinstance(model, SegmentationModel):
        raise ValueError(
            f"model {model.name!r} ({type(model).__name__}) carries no recipe: build it with "
            "contextnet_tf.build_model or load a .keras file saved from one"
        )
    return model.get_config()


def logits_only(model):
    """Returns `model` itself, or for an ``aux`` model (dict outputs) the sub-model that computes only the logits.

    A `SegmentationModel` is rebuilt with ``aux=False`` (it keeps its recipe); any other functional model with a
    dict output becomes a plain functional sub-model.
    """
    if isinstance(model, SegmentationModel) and model.aux:
        return model.rebuild(aux=False)
    if isinstance(model.output, dict):
        if "logits" not in model.output:
            raise ValueError(f"model outputs {sorted(model.output)} have no 'logits' entry to keep")
        return keras.Model(model.input, model.output["logits"], name=model.name)
    return model


def copy_weights_by_name(source, target):
    """Copies the weights of every layer of `target` from the layer of the same name in `source`."""
    for layer in target.layers:
        if layer.weights:
            try:
                source_layer = source.get_layer(layer.name)
            except ValueError as error:
                raise ValueError(f"{source.name} has no layer {layer.name!r} to copy weights from") from error
            layer.set_weights(source_layer.get_weights())
