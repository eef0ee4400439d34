"""Console progress of a training run: `keras.utils.Progbar` with loss, images/s, learning rate and ETA."""

import sys
import time

import keras


class ImagesPerSecond:
    """Throughput over the steps since the last `rate()` call, ignoring the first step (graph tracing)."""

    def __init__(self, batch_size):
        self.batch_size = batch_size
        self._start = None
        self._steps = 0

    def tick(self):
        """Marks the end of one step."""
        if self._start is None:
            self._start = time.perf_counter()
            return
        self._steps += 1

    @property
    def pending_steps(self):
        """Steps measured since the last reset."""
        return self._steps

    def rate(self, reset=True):
        """Images per second since the last reset (0.0 before two steps)."""
        if self._start is None or self._steps == 0:
            return 0.0
        now = time.perf_counter()
        value = self._steps * self.batch_size / max(now - self._start, 1e-9)
        if reset:
            self._start, self._steps = now, 0
        return value


class TrainProgress:
    """Progress bar over the steps of this invocation (so the ETA is right after a resume; the run's log line says
    which global steps they are).

    Args:
        start_step: steps done before this invocation.
        total_steps: last step of the run.
        batch_size: global batch size (for images/s).
        enabled: False prints nothing.
    """

    def __init__(self, start_step, total_steps, batch_size, enabled=True):
        self.start_step = start_step
        self.enabled = enabled
        self.speed = ImagesPerSecond(batch_size)
        self._images_per_s = 0.0
        interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
        self.bar = keras.utils.Progbar(
            max(1, total_steps - start_step),
            stateful_metrics=["loss", "ce", "img/s", "lr"],
            interval=0.1 if interactive else 30.0,
            unit_name="step",
        )

    def update(self, step, loss, ce, lr, finalize=False):
        """Advances the bar to global step `step` with the latest scalars."""
        self.speed.tick()
        if self.speed.pending_steps >= 5 or finalize:
            self._images_per_s = self.speed.rate() or self._images_per_s
        if not self.enabled:
            return
        values = [("loss", loss), ("ce", ce), ("img/s", self._images_per_s), ("lr", lr)]
        self.bar.update(step - self.start_step, values=values, finalize=finalize)

    @property
    def images_per_second(self):
        """Latest measured training throughput."""
        return self._images_per_s
