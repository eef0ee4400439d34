"""The divergence guard: stop a run whose loss is not finite or explodes, before it saves wrecked weights.

A loss that blows up by orders of magnitude but stays finite (a learning rate far too high) trains to exit 0 with
garbage weights unless something looks at its size. `DivergenceGuard` trips on any of:

* a non-finite loss part;
* a cross-entropy above ``CE_BOUND_FACTOR * ln(num_classes)``: the uniform prediction scores ``ln(num_classes)``, a
  freshly initialised network about that, and a run only ever improves on it;
* after ``warmup`` steps, a loss (or its L2 term alone) above ``factor`` times the median of the last ``window``
  steps.

The loss of step ``s`` is computed with the weights left by step ``s - 1``, so when step ``s`` trips, the checkpoint of
step ``s - 1`` already holds the wrecked weights: the loop discards the checkpoints from step ``s - 1`` on and keeps
the newest one before (`DivergenceGuard.first_bad_step`).
"""

import collections
import math

import numpy as np

CE_BOUND_FACTOR = 10.0


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite, or exploded; the message says at which step, why, and which
    checkpoint was kept."""


class DivergenceGuard:
    """Watches the loss parts of every step (see the module docstring).

    Args:
        num_classes: classes of the dataset (sets the cross-entropy bound).
        factor: how many times the running median a loss may reach.
        warmup: steps observed before the median test applies (the first steps of a run move fast).
        window: steps in the running median.
    """

    def __init__(self, num_classes, factor=10.0, warmup=20, window=100):
        self.ce_bound = CE_BOUND_FACTOR * math.log(max(int(num_classes), 2))
        self.factor = float(factor)
        self.warmup = int(warmup)
        self.history = {name: collections.deque(maxlen=int(window)) for name in ("loss", "l2")}

    def check(self, step, parts):
        """The reason `parts` (``{"loss", "ce", "l2", ...}`` floats of step `step`) shows divergence, or None; a
        step that passes joins the running medians."""
        bad = [f"{name} is {value}" for name, value in parts.items() if not math.isfinite(value)]
        if bad:
            return ", ".join(bad)
        if parts.get("ce", 0.0) > self.ce_bound:
            return (f"the cross-entropy {parts['ce']:.4g} exceeds {self.ce_bound:.3g} ({CE_BOUND_FACTOR:g} x "
                    "ln(classes), the uniform prediction's)")
        for name, history in self.history.items():
            if name in parts and len(history) >= self.warmup and history:
                median = float(np.median(history))
                if median > 0 and parts[name] > self.factor * median:
                    what = "loss" if name == "loss" else "L2 term"
                    return (f"the {what} {parts[name]:.4g} is over {self.factor:g} x its running median "
                            f"{median:.4g}")
        for name, history in self.history.items():
            if name in parts:
                history.append(parts[name])
        return None

    @staticmethod
    def first_bad_step(step):
        """The first step whose saved weights are suspect when step `step` trips: ``step - 1``."""
        return step - 1
