"""Resumable training input: the batch of step ``s`` depends only on (seed, s), however the run was interrupted.

Step ``s`` belongs to epoch ``e = s // steps_per_epoch``. Each epoch reads a fresh `contextnet_tf.data` pipeline
seeded with ``hash(seed, e)`` (its own shuffle and augmentation draws, deterministic), so resuming at step ``s``
rebuilds epoch ``e``'s pipeline and skips the ``s % steps_per_epoch`` batches already consumed: at most one epoch of
input is replayed, never the whole run. The pipeline repeats, so an epoch never runs short, whatever the sharding.

The augmentation is the run's own: `augment_config` (the named `TrainConfig.augment` with the run's scale range and
CutMix and ClassMix probabilities).
"""

import dataclasses

import numpy as np

from contextnet_tf import data
from contextnet_tf.data.augment import AUGMENTATIONS
from contextnet_tf.training.distribute import local_replicas


def epoch_seed(seed, epoch):
    """The data seed of one epoch, a 31-bit integer derived from (seed, epoch)."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0] % (2**31 - 1))


def augment_config(config):
    """The `data.AugmentConfig` a run trains with: ``AUGMENTATIONS[config.augment]`` at ``config.scale_range``, with
    ``config.cutmix`` and ``config.classmix``."""
    return dataclasses.replace(AUGMENTATIONS[config.augment], scale_range=tuple(config.scale_range),
                               cutmix=config.cutmix, classmix=config.classmix)


def _make_epoch_dataset(config, input_context, epoch, skip, take):
    replicas = local_replicas(input_context)
    dataset = data.make_dataset(
        config.dataset,
        config.data_dir,
        config.train_split,
        training=True,
        batch_size=config.batch_size,  # Global; make_dataset divides it by the replicas.
        crop_size=tuple(config.crop),
        seed=epoch_seed(config.seed, epoch),
        deterministic=config.deterministic,
        cache=config.cache,
        input_context=input_context,
        scale_range=tuple(config.scale_range),
        augment_config=augment_config(config),
        label_source=config.label_source,
    )
    # One step takes one per-replica batch for each replica this pipeline feeds.
    return dataset.skip(skip * replicas).take(take * replicas)


def train_batches(strategy, config, steps_per_epoch, start_step, total_steps):
    """Yields ``(step, distributed_batch)`` for steps ``start_step + 1 .. total_steps`` (1-based step numbers).

    Args:
        strategy: the `tf.distribute` strategy; batches come from `distribute_datasets_from_function`.
        config: the `TrainConfig` (dataset, split, crop, batch size, seed, ...).
        steps_per_epoch: global batches per epoch.
        start_step: steps already done (0 for a new run).
        total_steps: last step of the run.
    """
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by the {strategy.num_replicas_in_sync} replicas"
        )
    done = start_step
    while done < total_steps:
        epoch, offset = divmod(done, steps_per_epoch)
        take = min(steps_per_epoch - offset, total_steps - done)

        def dataset_fn(input_context, epoch=epoch, offset=offset, take=take):
            return _make_epoch_dataset(config, input_context, epoch, offset, take)

        batches = strategy.distribute_datasets_from_function(dataset_fn)
        produced = 0
        for batch in batches:
            produced += 1
            done += 1
            yield done, batch
        if produced == 0:
            raise RuntimeError(f"the training pipeline of epoch {epoch} produced no batch")
