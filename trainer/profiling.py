"""`--profile_steps=START,STOP`: a TensorFlow profiler trace of those training steps.

The trace goes into the run's TensorBoard log folder (`<output_dir>/train/plugins/profile/...`),
where TensorBoard's Profile tab (the optional `tensorboard-plugin-profile`, `pip install
.[profile]`) shows the op-level time of each step, the trace viewer and the input-pipeline
analysis. The training loops call `StepProfiler.steps_to_run` so that a compiled loop of many
steps stops exactly at START and STOP, and wrap their work in `trace`: the named annotations
`train_step` (with its step number, which is how the Profile tab finds steps), `checkpoint_save`
and `evaluate`; inside the step graph, the input fetch runs under the name scope `input_fetch`.
On a GPU the same annotations become NVTX ranges for Nsight Systems (docs/trainer.md).
"""

from __future__ import annotations

import tensorflow as tf
from absl import logging

from trainer.config import parse_profile_steps


def trace(name: str, *, step: int | None = None):
    """A named profiler annotation (a no-op costing ~1 µs when no trace is being taken);
    `step` marks a training step, as the Profile tab's step-time graph expects."""
    if step is None:
        return tf.profiler.experimental.Trace(name)
    return tf.profiler.experimental.Trace(name, step_num=step, _r=1)


class StepProfiler:
    """Starts the profiler when the loop reaches START and stops it at STOP.

    Args:
      profile_steps: the flag's text ("" profiles nothing).
      logdir: the TensorBoard log folder the trace goes into.
    """

    def __init__(self, profile_steps: str, *, logdir: str):
        self.window = parse_profile_steps(profile_steps)
        self.logdir = logdir
        self.active = False
        self.done = False

    def steps_to_run(self, step: int, steps: int) -> int:
        """`steps` cut short so that the next loop ends at START or at STOP."""
        if self.window is None or self.done:
            return steps
        start, stop = self.window
        if step >= stop:  # e.g. a run resumed past the window
            return steps
        boundary = start if step < start else stop
        return min(steps, boundary - step)

    def before(self, step: int) -> None:
        """Called before the loop that starts at `step`."""
        if self.window is None or self.active or self.done:
            return
        start, stop = self.window
        if start <= step < stop:
            logging.info("profiling steps %d to %d into %s", step, stop, self.logdir)
            tf.profiler.experimental.start(self.logdir)
            self.active = True

    def after(self, step: int) -> None:
        """Called after a loop that ended at `step` (and once more when training ends)."""
        if self.active and step >= self.window[1]:
            self.stop()

    def stop(self) -> None:
        """Stops a running trace; no more traces after it."""
        if self.active:
            tf.profiler.experimental.stop()
            logging.info(
                "wrote the profile to %s: open TensorBoard's Profile tab "
                "(pip install tensorboard-plugin-profile)",
                self.logdir,
            )
        self.active = False
        self.done = True
