"""Progress lines for the data stages on the local runner: what has been read, how fast, and
the time left where the input's size is known.

    pipeline.extract_text: 41,210 pages (1,930/s); 412.0 MB of 1.65 GB of input (25%, 19.3 MB/s); ~1 min left

A stage builds one `Progress` per reading step when it builds its pipeline and hands it to the
DoFn that reads; the DoFn calls `advance` as it goes. Beam runs DoFns in the workers, so the
counts are kept per process (every DoFn instance of a process adds to the same line). With
`--direct_num_workers=N` each worker process prints its own line and the time left is
estimated as if the others read as fast (said in the line). Beam's counters only become
readable when the job ends, which is why the progress is not read from them.

Off with `--noprogress`, and off on Dataflow, whose console shows the job's counters instead
(`stage.run` decides, before the pipeline is built: each `Progress` carries the decision into
the workers). The lines go to the log at INFO, so `--verbosity=-1` hides them too.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

_enabled = True
_lock = threading.Lock()
_states: dict[str, _State] = {}


def configure(*, enabled: bool) -> None:
    """Whether the `Progress` objects made from now on print (stage.run sets it)."""
    global _enabled
    _enabled = enabled


@dataclasses.dataclass
class _State:
    started: float
    last_line: float
    items: int = 0
    bytes_done: int = 0


@dataclasses.dataclass
class Progress:
    """One reading step's progress line.

    Attributes:
      step: how the line starts, e.g. "extract_text" or "extract_text: template pass".
      unit: what `items` counts ("pages", "documents", "lines").
      total_bytes: the size of the step's whole input (0: unknown, no time left is shown).
      workers: processes sharing the input (the local runner's --direct_num_workers).
      every_seconds: the least time between two lines of a process.
      enabled: taken from `configure` when made (then pickled into the workers with the DoFn).
    """

    step: str
    unit: str
    total_bytes: int = 0
    workers: int = 1
    every_seconds: float = 5.0
    enabled: bool = dataclasses.field(default_factory=lambda: _enabled)

    def advance(self, *, items: int = 0, bytes_done: int = 0) -> None:
        """Adds what was just read; prints a line if `every_seconds` have passed."""
        if not self.enabled:
            return
        now = time.monotonic()
        with _lock:
            state = _states.get(self.step)
            if state is None:
                state = _states[self.step] = _State(started=now, last_line=now)
            state.items += items
            state.bytes_done += bytes_done
            if now - state.last_line < self.every_seconds:
                return
            state.last_line = now
            line = self.describe(state.items, state.bytes_done, seconds=now - state.started)
        logging.info("%s", line)

    def describe(self, items: int, bytes_done: int, *, seconds: float) -> str:
        """The progress line for these counts after `seconds`."""
        seconds = max(seconds, 1e-9)
        parts = [f"{self.step}: {items:,} {self.unit} ({items / seconds:,.0f}/s)"]
        rate = bytes_done / seconds
        if self.total_bytes:
            # Each worker process sees its own share; estimate the whole from it.
            done = min(self.total_bytes, bytes_done * self.workers)
            text = (
                f"{human_size(bytes_done)} of {human_size(self.total_bytes)} of input "
                f"({done / self.total_bytes:.0%}, {human_size(rate)}/s)"
            )
            if self.workers > 1:
                text = f"this worker of {self.workers}: {text}"
            parts.append(text)
            if bytes_done:
                left = (self.total_bytes - done) / (rate * self.workers)
                parts.append(f"~{_duration(left)} left")
        elif bytes_done:
            parts.append(f"{human_size(bytes_done)} of input ({human_size(rate)}/s)")
        return "; ".join(parts)


def human_size(count: float) -> str:
    """Bytes as kB, MB or GB."""
    if count >= 1e9:
        return f"{count / 1e9:,.2f} GB"
    if count >= 1e6:
        return f"{count / 1e6:,.1f} MB"
    return f"{count / 1e3:,.1f} kB"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def reset() -> None:
    """Forgets this process's counts (a new job in the same process starts from zero)."""
    with _lock:
        _states.clear()
