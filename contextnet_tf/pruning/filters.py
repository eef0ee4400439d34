"""Filter pruning from a wider network to a narrower one, by the L1 norm of the filters (Li et al., ICLR 2017).

The ContextNet paper (section 3.2, "Network Pruning") trains a network with twice the feature maps and prunes it
progressively to 1.5x, 1.25x and 1x, removing the filters with the lowest L1 sum. `prune_model` does one such step:
it builds the narrower model exactly as `build_model` would (same architecture, same parameter count) and copies in
the weights of the kept filters.

Coupled channels are found from the functional graph, not from a hand-written list:

* every Conv2D whose output is pruned opens a *channel group*;
* layers that keep channels (batch norm, activations, depthwise convs, resizes, pooling, dropout) pass the group on;
* an ``Add`` (residual connections, the fusion unit, ICNet-style pyramid pooling) merges the groups of its inputs,
  so all of them keep the same channels;
* a ``Concatenate`` (PSPNet pyramid pooling) keeps each input's group on its own slice of the output.

A group's filters are ranked by the sum over its member convolutions of each output filter's importance; the largest
are kept, in their original order. A group whose size is the same in both models (the input image, the classifier
outputs, auxiliary heads of fixed width) keeps every channel.

Importance (`IMPORTANCES`): ``"l1"``, the paper's, is the L1 norm of the filter. ``"bn_scaled_l1"`` (ours, not the
paper's) is the L1 norm of the filter with the batch norm applied to its output folded in:
``L1 * |gamma| / sqrt(moving_variance + epsilon)``, so a filter that its batch norm scales down counts for less; a
convolution whose output goes to no batch norm keeps its plain L1 norm.

A layer whose channel behaviour is not one of the above (a Dense, a grouped or channels-first convolution, a
depthwise convolution with a depth multiplier, a Concatenate or batch norm on another axis, a custom layer, a layer
called twice) is an error naming the layer and its class, never assumed to keep channels.
"""

import keras
import numpy as np

from contextnet_tf.models import SegmentationModel, recipe
from contextnet_tf.models.layers import AdaptiveAveragePooling2D, Resize

_PASS_THROUGH = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dropout,
    keras.layers.Rescaling,
    Resize,
    AdaptiveAveragePooling2D,
)


class _Groups:
    """Union-find over channel groups, with each group's member convolutions."""

    def __init__(self):
        self.parent = {}
        self.members = {}

    def new(self, key, size, conv=None):
        self.parent[key] = key
        self.members[key] = ([conv] if conv else [], size)
        return key

    def find(self, key):
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, a, b):
        a, b = self.find(a), self.find(b)
        if a != b:
            if self.members[a][1] != self.members[b][1]:
                raise ValueError(f"cannot couple channel groups of sizes {self.members[a][1]} and {self.members[b][1]}")
            self.parent[b] = a
            self.members[a] = (self.members[a][0] + self.members[b][0], self.members[a][1])


IMPORTANCES = ("l1", "bn_scaled_l1")


def _unknown(layer, why):
    return ValueError(f"pruning does not know how layer {layer.name!r} ({type(layer).__name__}) maps channels: {why}")


def _node_tensors(layer):
    if len(layer._inbound_nodes) != 1:
        raise _unknown(layer, f"it is called {len(layer._inbound_nodes)} times in the model, pruning handles layers "
                              "called once")
    node = layer._inbound_nodes[0]
    return list(node.input_tensors), list(node.output_tensors)


def _is_conv(layer):
    return isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)


def _check_known(layer):
    """Raises `_unknown` for the settings of known layer types under which channels do not map as assumed."""
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise _unknown(layer, f"data_format={layer.data_format!r}, pruning handles channels_last only")
    if _is_conv(layer) and layer.groups != 1:
        raise _unknown(layer, f"a grouped convolution (groups={layer.groups})")
    if isinstance(layer, keras.layers.DepthwiseConv2D) and layer.depth_multiplier != 1:
        raise _unknown(layer, f"depth_multiplier={layer.depth_multiplier} changes the number of channels")
    if isinstance(layer, keras.layers.BatchNormalization) and layer.axis not in (-1, len(layer.input.shape) - 1):
        raise _unknown(layer, f"axis={layer.axis} is not the channel axis")
    if isinstance(layer, keras.layers.Concatenate) and layer.axis not in (-1, len(layer.output.shape) - 1):
        raise _unknown(layer, f"axis={layer.axis} is not the channel axis")


def channel_layouts(model):
    """Maps each layer name to the channel layout of its output: a list of (group key, size) segments.

    Returns (layouts, groups, input_layouts) where input_layouts[name] is the concatenated layout of the layer's
    first input (what its kernel's input axis or its per-channel weights index).
    """
    groups = _Groups()
    by_tensor, layouts, input_layouts = {}, {}, {}
    for layer in model.layers:
        inputs, outputs = _node_tensors(layer)
        in_layouts = [by_tensor[id(t)] for t in inputs]
        if isinstance(layer, keras.layers.InputLayer):
            layout = [(groups.new(layer.name, outputs[0].shape[-1]), outputs[0].shape[-1])]
            by_tensor.update({id(t): layout for t in outputs})
            layouts[layer.name] = layout
            continue
        _check_known(layer)
        if _is_conv(layer):
            layout = [(groups.new(layer.name, layer.filters, conv=layer.name), layer.filters)]
        elif isinstance(layer, keras.layers.Add):
            for other in in_layouts[1:]:
                if [size for _, size in other] != [size for _, size in in_layouts[0]]:
                    raise _unknown(layer, "its inputs are made of channel groups of different sizes "
                                          f"{[size for _, size in in_layouts[0]]} and {[size for _, size in other]}")
                for (a, _), (b, _) in zip(in_layouts[0], other, strict=True):
                    groups.union(a, b)
            layout = in_layouts[0]
        elif isinstance(layer, keras.layers.Concatenate):
            layout = [segment for lay in in_layouts for segment in lay]
        elif isinstance(layer, _PASS_THROUGH):
            layout = in_layouts[0]  # channel-preserving; a Resize's second input only gives the size.
        else:
            raise _unknown(layer, "it is none of the layer types pruning knows (Conv2D, DepthwiseConv2D, batch norm, "
                                  "Activation, Dropout, Rescaling, Resize, AdaptiveAveragePooling2D, Add, Concatenate)")
        if in_layouts:
            input_layouts[layer.name] = in_layouts[0]
        layouts[layer.name] = layout
        for t in outputs:
            by_tensor[id(t)] = layout
    return layouts, groups, input_layouts


def filter_l1_norms(model, layer_name):
    """L1 norm of each output filter of a Conv2D layer (sum of absolute kernel values over all other axes)."""
    kernel = keras.ops.convert_to_numpy(model.get_layer(layer_name).kernel)
    return np.abs(kernel).sum(axis=(0, 1, 2))


def following_batch_norms(model):
    """Maps the name of each Conv2D whose output goes straight into a BatchNormalization to that batch norm's name."""
    producer = {}
    for layer in model.layers:
        for t in _node_tensors(layer)[1]:
            producer[id(t)] = layer
    result = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            source = producer.get(id(_node_tensors(layer)[0][0]))
            if source is not None and _is_conv(source):
                result[source.name] = layer.name
    return result


def check_importance(importance):
    """Raises ValueError unless `importance` is one of `IMPORTANCES`."""
    if importance not in IMPORTANCES:
        raise ValueError(f"filter importance must be one of {', '.join(IMPORTANCES)}, got {importance!r}")


def filter_importance(model, layer_name, importance="l1", batch_norms=None):
    """Importance of each output filter of a Conv2D layer, by which pruning ranks them (module docstring).

    Args:
        model: the model holding the layer.
        layer_name: the Conv2D's name.
        importance: ``"l1"`` (the paper's: the filter's L1 norm) or ``"bn_scaled_l1"`` (ours: the L1 norm times
            ``|gamma| / sqrt(moving_variance + epsilon)`` of the batch norm applied to the conv's output; plain L1
            where there is none).
        batch_norms: `following_batch_norms(model)`, if already computed.
    """
    check_importance(importance)
    norms = filter_l1_norms(model, layer_name)
    if importance == "l1":
        return norms
    batch_norms = following_batch_norms(model) if batch_norms is None else batch_norms
    if layer_name not in batch_norms:
        return norms
    bn = model.get_layer(batch_norms[layer_name])
    gamma = keras.ops.convert_to_numpy(bn.gamma) if bn.scale else np.ones_like(norms)
    variance = keras.ops.convert_to_numpy(bn.moving_variance)
    return norms * np.abs(gamma) / np.sqrt(variance + bn.epsilon)


def kept_channels(source, target, importance="l1"):
    """For every channel group of `source`, the sorted indices of the channels kept in `target`.

    `importance` (``"l1"`` or ``"bn_scaled_l1"``, see `filter_importance`) ranks each group's filters.
    Returns {group key: np.ndarray of indices} with group keys from `channel_layouts(source)`.
    """
    check_importance(importance)
    layouts, groups, _ = channel_layouts(source)
    batch_norms = following_batch_norms(source)
    target_layouts, _, _ = channel_layouts(target)
    kept = {}
    for name, layout in layouts.items():
        if name not in target_layouts:
            raise ValueError(f"layer {name!r} of the source model is missing from the target model")
        for (key, size), (_, target_size) in zip(layout, target_layouts[name], strict=True):
            root = groups.find(key)
            if root in kept:
                if len(kept[root]) != target_size:
                    raise ValueError(f"layer {name!r}: inconsistent target size for its channel group")
                continue
            if target_size > size:
                raise ValueError(f"layer {name!r} has {size} channels, the target wants more ({target_size})")
            if target_size == size:
                kept[root] = np.arange(size)
                continue
            convs = groups.members[root][0]
            score = sum(filter_importance(source, conv, importance, batch_norms) for conv in convs)
            kept[root] = np.sort(np.argsort(-score, kind="stable")[:target_size])
    return {key: kept[groups.find(key)] for key in groups.parent}


def _indices(layout, kept):
    """Kept indices into a concatenated layout."""
    parts, offset = [], 0
    for key, size in layout:
        parts.append(kept[key] + offset)
        offset += size
    return np.concatenate(parts)


def transfer_pruned_weights(source, target, importance="l1"):
    """Copies the kept filters of `source` into `target` (same architecture, same layer names, narrower).

    `importance` ranks the filters (`filter_importance`). Layers of `target` that `source` does not have (auxiliary
    heads added for fine-tuning a logits-only model) keep their fresh initialisation.
    """
    layouts, _, input_layouts = channel_layouts(source)
    kept = kept_channels(source, target, importance)
    source_names = {layer.name for layer in source.layers}
    for layer in target.layers:
        if not layer.weights or layer.name not in source_names:
            continue
        src = source.get_layer(layer.name)
        out_idx = _indices(layouts[layer.name], kept)
        in_idx = _indices(input_layouts[layer.name], kept)
        values = []
        for weight in src.weights:
            value = keras.ops.convert_to_numpy(weight)
            if isinstance(src, keras.layers.DepthwiseConv2D):
                value = value[:, :, in_idx, :] if value.ndim == 4 else value[in_idx]
            elif isinstance(src, keras.layers.Conv2D):
                value = value[:, :, in_idx][..., out_idx] if value.ndim == 4 else value[out_idx]
            else:  # batch norm: per-channel vectors
                value = value[out_idx]
            values.append(value)
        layer.set_weights(values)
    return target


def prune_model(model, width, importance="l1"):
    """Prunes a trained `SegmentationModel` of width W (its recipe's ``width``) to `width` < W.

    Args:
        model: the wider trained model (with or without aux heads), as `build_model` returns it.
        width: the target width multiplier (e.g. 1.5, then 1.25, then 1.0).
        importance: how filters are ranked: ``"l1"`` (the paper's filter L1 norm, the default) or
            ``"bn_scaled_l1"`` (ours: the L1 norm scaled by the following batch norm, see `filter_importance`).

    Returns:
        A new `SegmentationModel`, the same recipe at ``width`` (so it saves, loads and runs at any size like any
        other), with the kept weights.
    """
    check_importance(importance)
    config = recipe(model)
    if not width < config["width"]:
        raise ValueError(f"pruning goes from a wider to a narrower model: width {width} >= the model's {config['width']}")
    target = SegmentationModel.from_config({**config, "width": width})
    return transfer_pruned_weights(model, target, importance)
