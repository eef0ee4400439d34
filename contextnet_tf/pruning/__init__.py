"""Filter pruning (ContextNet section 3.2): `filters` prunes coupled channel groups, `schedule` runs 2x -> 1x.

Imports `contextnet_tf.models` and `contextnet_tf.training`.
"""
