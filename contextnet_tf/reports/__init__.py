"""Reports over the whole library: the quick start, model cards, the papers' ablation studies and model tables.

The top layer: it may import every other subpackage; nothing imports it.
"""
