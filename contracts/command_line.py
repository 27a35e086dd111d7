"""How every command of ours starts and stops: a quiet start-up, and one line for an expected error.

The contract, for the stages, the tokenizer, the trainer, the converters and the launchers:

- an expected error (a bad dump, a missing file, a wrong flag, a corrupt record) is one line on
  stderr, `<command>: error: <message>` naming the file and the problem, and exit status 1;
  no Python traceback. Tracebacks stay for bugs (any other exception), and for every error with
  `--verbosity=1` or more;
- TensorFlow's C++ start-up chatter (oneDNN, "Could not find cuda drivers", CPU features, and the
  alarming `failed call to cuInit` on a machine with no GPU) is not shown: it is written to the
  process's stderr before any log setting applies, so `TF_CPP_MIN_LOG_LEVEL` cannot hide it
  (`import_tensorflow_quietly`);
- Beam's INFO lines ("Converting string literal type hint to Any", runner set-up) are not shown
  unless asked for with `--verbosity=1`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence

from absl import app, flags

# Lines TensorFlow's native code prints at import and device start-up that say nothing to a user.
_CHATTER = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on"
    r"|Could not find cuda drivers|cpu_feature_guard|To enable the following instructions"
    r"|rebuild TensorFlow with the appropriate compiler flags|Unable to register cu(DNN|FFT|BLAS)"
    r"|computation placer already registered|TF-TRT Warning|successful NUMA node read"
)
_NO_GPU_CHATTER = re.compile(r"failed call to cuInit|CUDA_ERROR_NO_DEVICE|cuda_diagnostics")
_tensorflow = None


def import_tensorflow_quietly():
    """`import tensorflow`, and its device start-up, with the start-up chatter filtered out.

    Native code writes those lines to file descriptor 2 directly, so for the import the
    descriptor points at a temporary file; afterwards every line that is not chatter is written
    to the real stderr, in order. `failed call to cuInit` is dropped only when no GPU is found.
    Idempotent; returns the module.
    """
    global _tensorflow
    if _tensorflow is not None:
        return _tensorflow
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")  # the cuInit call happens here
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        for line in captured.read().decode("utf-8", errors="replace").splitlines(keepends=True):
            if _CHATTER.search(line) or (not gpus and _NO_GPU_CHATTER.search(line)):
                continue
            sys.stderr.write(line)
    _tensorflow = tf
    return tf


def quiet_libraries(verbosity: int) -> None:
    """Below --verbosity=1, Beam and the GCS clients log warnings and errors only, and Beam's
    own error lines (the traceback of a failed step, which Beam then raises) not at all: the
    raised error is reported once, as one line or, for a bug, with its traceback."""
    if verbosity >= 1:
        return
    for name in ("gcsfs", "google", "urllib3", "fsspec"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


def is_expected_error(error: BaseException) -> bool:
    """An error a user can act on: bad input, a missing file, a wrong flag, a corrupt record.

    OSError and ValueError (and their subclasses, ours included: DumpError, BookError,
    CheckpointMismatchError, LaunchError...), and TensorFlow's own I/O and data errors
    (NotFoundError, DataLossError, InvalidArgumentError...), recognised by name so this module
    needs no TensorFlow.
    """
    # A missing optional package (ModuleNotFoundError) is the user's to install.
    if isinstance(error, OSError | ValueError | ModuleNotFoundError):
        return True
    return any(
        cls.__name__ == "OpError" and cls.__module__.startswith("tensorflow")
        for cls in type(error).__mro__
    )


def error_line(program: str, error: BaseException) -> str:
    """`<program>: error: <message>`, the message on one line."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    message = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    return f"{program}: error: {message}"


def _verbosity() -> int:
    try:
        return int(flags.FLAGS.verbosity)
    except (AttributeError, flags.UnparsedFlagAccessError):
        return 0


def guarded(main: Callable[[Sequence[str]], object], *, program: str) -> Callable:
    """Wraps an absl `main`: an expected error becomes one line on stderr and exit status 1."""

    def guarded_main(argv: Sequence[str]):
        verbosity = _verbosity()
        quiet_libraries(verbosity)
        try:
            return main(argv)
        except Exception as error:
            if verbosity >= 1 or not is_expected_error(error):
                raise
            print(error_line(program, error), file=sys.stderr, flush=True)
            sys.exit(1)

    return guarded_main


def run(
    main: Callable[[Sequence[str]], object],
    *,
    program: str,
    flags_parser: Callable[[Sequence[str]], list[str]] | None = None,
) -> None:
    """`absl.app.run(main)` with the contract above: what every command's `__main__` calls.

    Args:
      main: the command's absl main.
      program: its name in error lines, e.g. "pipeline.extract_text".
      flags_parser: as for `absl.app.run` (the Beam stages leave Beam's options to Beam).
    """
    kwargs = {"flags_parser": flags_parser} if flags_parser else {}
    app.run(guarded(main, program=program), **kwargs)
