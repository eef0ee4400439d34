"""Training: the papers' recipes in a custom `tf.distribute` loop with resumable runs.

    from contextnet_tf.training import TrainConfig, train
    result = train(TrainConfig.from_preset("contextnet_paper", model="cn14", dataset="cityscapes",
                                           data_dir="data/cityscapes", workdir="runs/cn14"))
"""

from contextnet_tf.training.config import TrainConfig
from contextnet_tf.training.divergence import DivergenceError
from contextnet_tf.training.loop import NonFiniteLossError, TrainResult, make_train_step, train
from contextnet_tf.training.presets import PRESETS

__all__ = ["PRESETS", "DivergenceError", "NonFiniteLossError", "TrainConfig", "TrainResult", "make_train_step", "train"]
