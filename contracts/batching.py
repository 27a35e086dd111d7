"""How a global batch splits over replicas and micro-batches: the trainer's rule, which the
launchers check too before they start a pod (a v3-32 is 32 replicas: a batch of 8 cannot split).

One copy, here, so that the trainer and the launchers cannot disagree, and one copy of the
default eval batch, which both need: the trainer as its flag's default, the launchers to check a
run that evaluates without naming one.
"""

from __future__ import annotations

DEFAULT_EVAL_BATCH_SIZE = 8  # google-research/bert's run_pretraining.py default
# run_classifier's and distill's default eval batch (google-research/bert's run_classifier.py
# has 8), which the launchers check against the replicas when a run evaluates without naming one
DEFAULT_CLASSIFIER_EVAL_BATCH_SIZE = 32


def batch_split_error(
    *,
    train_batch_size: int | None,
    eval_batch_size: int | None,
    do_eval: bool,
    replicas: int,
    gradient_accumulation_steps: int = 1,
) -> str | None:
    """Why the batches cannot run on `replicas` replicas; None when they can.

    The train batch must split into replicas x micro-batches; the eval batch over the replicas,
    but only when the run evaluates (`eval_batch_size` None: the default).
    """
    if train_batch_size is not None and train_batch_size % (replicas * gradient_accumulation_steps):
        micro = (
            f" x {gradient_accumulation_steps} micro-batches"
            if gradient_accumulation_steps > 1
            else ""
        )
        return (
            f"train_batch_size {train_batch_size} does not split into {replicas} "
            f"replica(s){micro}: use a multiple of {replicas * gradient_accumulation_steps}"
        )
    if do_eval:
        eval_batch = DEFAULT_EVAL_BATCH_SIZE if eval_batch_size is None else eval_batch_size
        if eval_batch % replicas:
            return (
                f"eval_batch_size {eval_batch} does not split over {replicas} replica(s): "
                f"use a multiple of {replicas}"
            )
    return None
