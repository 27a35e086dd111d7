"""The pretraining loop: a custom loop over `strategy.run`, checkpoints, TensorBoard, eval.

One optimiser update ("step"), inside `strategy.run`:
  1. all-reduce the masked-LM weight sum of the update's batch (one scalar), so each replica
     can normalise its loss by the global Σ weight;
  2. for each of `gradient_accumulation_steps` micro-batches of the replica's batch, forward
     and backward (XLA-compiled with --jit_compile), summing gradients locally;
  3. one all-reduce of all gradients together with the metric sums;
  4. unscale (fp16), global norm, skip the update on every replica at once when it is not
     finite, else clip to --clip_norm and apply the optimiser; adjust the loss scale.
Losses are Σ weight·loss / Σ weight over all replicas and micro-batches, so a run gives the same
numbers for the same global batch whatever the replica count.

`--steps_per_loop` steps run in one call of a `tf.function` (one host round trip); between
calls the host writes TensorBoard scalars, logs a line and saves checkpoints. The step counter,
the optimiser slots and the loss scale live in the checkpoint, so a restarted run continues at
the same step with the same learning rate.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from absl import logging

from contracts import batching, storage
from trainer import (
    checkpoints,
    distribution,
    input_pipeline,
    modeling,
    optimization,
    profiling,
)
from trainer.config import BertConfig, PretrainingConfig

# Order of the metric sums that travel through the all-reduce, packed in one float32 vector.
METRIC_SUMS = (
    "mlm_loss_sum",  # Σ weight · masked-LM cross entropy
    "mlm_weight_sum",  # Σ weight (real predictions)
    "mlm_correct_sum",  # Σ weight · [argmax == label]
    "nsp_loss_sum",  # Σ next-sentence cross entropy
    "nsp_correct_sum",  # Σ [argmax == label]
    "examples",  # sequences
    "tokens",  # Σ input_mask (real tokens)
)
# Per-step values added up over a loop on the host side, after the sums above.
STEP_VALUES = ("finite_steps", "gradient_norm_sum")
# The train loop's vector: the above, then the seconds its input fetches waited for a batch.
LOOP_VALUES = METRIC_SUMS + STEP_VALUES + ("input_wait_seconds",)

# TensorBoard groups cards by the tag's prefix and sorts groups and cards by name: losses
# first, then the accuracies, the optimizer, the speed. Train and eval (the runs train/ and
# eval/) of one quantity share a tag, hence a card.
SUMMARY_GROUPS = {
    "loss": "loss",
    "mlm_loss": "loss",
    "nsp_loss": "loss",
    "masked_lm_accuracy": "metrics",
    "next_sentence_accuracy": "metrics",
    "learning_rate": "optimizer",
    "gradient_norm": "optimizer",
    "loss_scale": "optimizer",
    "skipped_steps": "optimizer",
    "examples_per_second": "throughput",
    "tokens_per_second": "throughput",
    "model_flops_utilization": "throughput",
    "input_wait_share": "throughput",
}
# Logged and in eval_results.txt, not charted (a count is a one-point chart).
NOT_CHARTED = frozenset({"eval_examples"})

EVAL_RESULTS_FILE = "eval_results.txt"
CONFIG_FILE = "config.json"

# Dense bf16/fp16 peak TFLOP/s of GPUs, for the MFU scalar (no sparsity).
GPU_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,  # SXM; the PCIe card is 756
    "A100": 312.0,
    "A10G": 125.0,
    "L4": 121.0,
    "V100": 125.0,
    "T4": 65.0,
}


class NonFiniteLossError(RuntimeError):
    """Too many updates in a row produced non-finite gradients."""


def pretraining_loss_sums(
    outputs: Mapping[str, tf.Tensor], features: Mapping[str, tf.Tensor]
) -> dict[str, tf.Tensor]:
    """Sums over a batch that add up across micro-batches and replicas (see METRIC_SUMS).

    Args:
      outputs: the model's outputs: mlm_logits float32 [batch, preds, vocab], nsp_logits
        float32 [batch, 2].
      features: a batch with masked_lm_ids, masked_lm_weights [batch, preds],
        next_sentence_labels [batch, 1], input_mask [batch, seq].

    Returns:
      {name: float32 scalar} for each of METRIC_SUMS.
    """
    weights = tf.cast(features["masked_lm_weights"], tf.float32)
    labels = tf.cast(features["masked_lm_ids"], tf.int32)
    mlm_logits = tf.cast(outputs["mlm_logits"], tf.float32)
    mlm_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=mlm_logits)
    mlm_correct = tf.cast(
        tf.equal(tf.argmax(mlm_logits, -1, output_type=tf.int32), labels), tf.float32
    )
    nsp_labels = tf.reshape(tf.cast(features["next_sentence_labels"], tf.int32), [-1])
    nsp_logits = tf.cast(outputs["nsp_logits"], tf.float32)
    nsp_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=nsp_labels, logits=nsp_logits)
    nsp_correct = tf.cast(
        tf.equal(tf.argmax(nsp_logits, -1, output_type=tf.int32), nsp_labels), tf.float32
    )
    return {
        "mlm_loss_sum": tf.reduce_sum(weights * mlm_loss),
        "mlm_weight_sum": tf.reduce_sum(weights),
        "mlm_correct_sum": tf.reduce_sum(weights * mlm_correct),
        "nsp_loss_sum": tf.reduce_sum(nsp_loss),
        "nsp_correct_sum": tf.reduce_sum(nsp_correct),
        "examples": tf.cast(tf.shape(nsp_labels)[0], tf.float32),
        "tokens": tf.reduce_sum(tf.cast(features["input_mask"], tf.float32)),
    }


def metrics_from_sums(sums: Mapping[str, float], *, nsp: bool = True) -> dict[str, float]:
    """mlm_loss, masked_lm_accuracy, nsp_loss, next_sentence_accuracy and loss from sums."""
    weight = max(sums["mlm_weight_sum"], 1e-12)
    examples = max(sums["examples"], 1e-12)
    metrics = {
        "mlm_loss": sums["mlm_loss_sum"] / weight,
        "masked_lm_accuracy": sums["mlm_correct_sum"] / weight,
    }
    if nsp:
        metrics["nsp_loss"] = sums["nsp_loss_sum"] / examples
        metrics["next_sentence_accuracy"] = sums["nsp_correct_sum"] / examples
    metrics["loss"] = metrics["mlm_loss"] + metrics.get("nsp_loss", 0.0)
    return metrics


def model_flops_per_sequence(
    config: BertConfig, *, seq_length: int, predictions: int, training: bool = True
) -> float:
    """Matmul FLOPs of one sequence (forward, or forward + backward = 3x when training).

    Counts 2 FLOPs per multiply-add of every matmul: the encoder's dense layers, the attention
    scores and context (2 · 2 · seq² · hidden per layer), the pooler and both heads (the
    masked-LM output against the whole vocab, on the gathered positions only). Embedding
    lookups, softmax, LayerNorm and element-wise work are not counted, as in the MFU of the
    PaLM paper.
    """
    hidden, layers = config.hidden_size, config.num_hidden_layers
    per_token_layer = 2 * (4 * hidden * hidden + 2 * hidden * config.intermediate_size)
    attention = 2 * 2 * seq_length * seq_length * hidden
    encoder = layers * (seq_length * per_token_layer + attention)
    heads = 2 * hidden * hidden + 2 * 2 * hidden  # pooler, next-sentence
    heads += predictions * 2 * (hidden * hidden + hidden * config.vocab_size)
    forward = float(encoder + heads)
    return 3.0 * forward if training else forward


def device_peak_tflops(strategy: tf.distribute.Strategy, configured: float) -> float:
    """Peak TFLOP/s of one device: the configured value, else a GPU table lookup, else 0."""
    if configured > 0:
        return configured
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus or isinstance(strategy, tf.distribute.TPUStrategy):
        return 0.0
    name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "")
    for part, peak in GPU_PEAK_TFLOPS.items():
        if part in name:
            return peak
    return 0.0


def resolve_jit_compile(jit_compile: bool | None, strategy: tf.distribute.Strategy) -> bool:
    """XLA on or off; None (auto) turns it on for TPUs and GPUs only: on CPUs TensorFlow's own
    oneDNN kernels ran the BERT step faster than XLA's CPU backend here (see benchmarks/)."""
    if jit_compile is not None:
        return jit_compile
    return isinstance(strategy, tf.distribute.TPUStrategy) or bool(
        tf.config.list_physical_devices("GPU")
    )


def _dtype_policy(mixed_precision: str) -> str:
    return {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[mixed_precision]


def _format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Trainer:
    """The model, optimiser, loss scale and step counter of one run, built under `strategy`,
    and the compiled train and eval functions over them.

    Args:
      config: the run.
      strategy: where to run (trainer.distribution.get_strategy).
    """

    def __init__(self, config: PretrainingConfig, *, strategy: tf.distribute.Strategy):
        self.config = config
        self.strategy = strategy
        problem = batching.batch_split_error(
            train_batch_size=config.train_batch_size,
            eval_batch_size=config.eval_batch_size,
            do_eval=config.do_eval,
            replicas=strategy.num_replicas_in_sync,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
        )
        if problem:
            raise ValueError(problem)
        with strategy.scope():
            self.model = modeling.BertPretrainingModel(
                config.bert, seed=config.seed, dtype=_dtype_policy(config.mixed_precision)
            )
            self.variables = list(self.model.trainable_weights)
            self._targets = [v.value for v in self.variables]
            self.optimizer = optimization.create_optimizer(
                config.optimizer,
                self.variables,
                weight_decay_rate=config.weight_decay_rate,
                beta_1=config.beta_1,
                beta_2=config.beta_2,
                epsilon=config.epsilon,
            )
            self.loss_scale = optimization.LossScale(
                initial_scale=config.initial_loss_scale,
                growth_steps=config.loss_scale_growth_steps,
                dynamic=config.mixed_precision == "fp16",
            )
            # Updates applied so far (skipped non-finite steps do not count).
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            # Updates in a row whose gradients were not finite.
            self.non_finite_steps = tf.Variable(
                0, dtype=tf.int64, trainable=False, name="non_finite_steps"
            )
            # Calls of the step function ever made; seeds dropout, so that a retried
            # (skipped) step draws new masks.
            self.attempts = tf.Variable(0, dtype=tf.int64, trainable=False, name="attempts")
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            optimizer=self.optimizer,
            loss_scale=self.loss_scale,
            step=self.step,
            non_finite_steps=self.non_finite_steps,
            attempts=self.attempts,
        )
        # Under MultiWorkerMirroredStrategy every worker saves (saving is collective), but only
        # the chief into output_dir: the others save into a local temporary folder, removed
        # at the end (`close`), so that no two processes write the same files.
        self.is_chief = distribution.is_chief(strategy)
        self.write_dir = (
            config.output_dir
            if self.is_chief
            else tempfile.mkdtemp(prefix=f"bert-{distribution.worker_name(strategy)}-")
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            self.write_dir,
            max_to_keep=config.keep_checkpoint_max,
            step_counter=self.step,
        )
        self.jit_compile = resolve_jit_compile(config.jit_compile, strategy)
        self._train_loop = None
        self._train_step = None
        self._compiled_gradients = None
        self._eval_step = None

    def summary_writer(self, name: str):
        """The TensorBoard writer of `output_dir/name` (a no-op writer except on the chief)."""
        if not self.is_chief:
            return tf.summary.create_noop_writer()
        return tf.summary.create_file_writer(storage.join(self.config.output_dir, name))

    def close(self) -> None:
        """Removes a non-chief worker's temporary folder."""
        if not self.is_chief and os.path.isdir(self.write_dir):
            shutil.rmtree(self.write_dir, ignore_errors=True)

    # ---- learning rate -------------------------------------------------------------------

    def learning_rate(self, step) -> tf.Tensor:
        config = self.config
        return optimization.learning_rate(
            step,
            peak_learning_rate=config.learning_rate,
            num_train_steps=config.num_train_steps,
            num_warmup_steps=config.num_warmup_steps,
            end_learning_rate=config.end_learning_rate,
            decay_power=config.decay_power,
        )

    # ---- one update, in replica context ---------------------------------------------------

    def _gradients(self, features, dropout_seed, global_weight, loss_scale):
        """Forward + backward over the replica's batch in micro-batches; returns the summed
        float32 gradients (scaled by loss_scale) and the metric-sum vector."""
        config = self.config
        micro = config.gradient_accumulation_steps
        examples = float(config.train_batch_size)

        def one_micro_batch(batch, seed):
            with tf.GradientTape() as tape:
                outputs = self.model(batch, training=True, dropout_seed=seed)
                sums = pretraining_loss_sums(outputs, batch)
                loss = tf.math.divide_no_nan(sums["mlm_loss_sum"], global_weight)
                if config.nsp:
                    loss += sums["nsp_loss_sum"] / examples
                scaled_loss = loss * loss_scale
            gradients = tape.gradient(scaled_loss, self.variables)
            # The gathered embedding gradient is IndexedSlices; the all-reduce wants it dense.
            gradients = [tf.convert_to_tensor(g, tf.float32) for g in gradients]
            return gradients, tf.stack([sums[name] for name in METRIC_SUMS])

        if micro == 1:
            return one_micro_batch(features, dropout_seed)

        def split(tensor):  # [batch, ...] -> [micro, batch / micro, ...]
            shape = tf.shape(tensor)
            return tf.reshape(tensor, tf.concat([[micro, shape[0] // micro], shape[1:]], 0))

        micro_batches = {name: split(value) for name, value in features.items()}

        def body(index, gradients, sums):
            batch = {name: value[index] for name, value in micro_batches.items()}
            seed = tf.random.experimental.stateless_fold_in(dropout_seed, index)
            new_gradients, new_sums = one_micro_batch(batch, seed)
            return (
                index + 1,
                [g + n for g, n in zip(gradients, new_gradients, strict=True)],
                sums + new_sums,
            )

        zeros = [tf.zeros(v.shape, tf.float32) for v in self.variables]
        _, gradients, sums = tf.while_loop(
            lambda index, *_: index < micro,
            body,
            (tf.constant(0), zeros, tf.zeros([len(METRIC_SUMS)], tf.float32)),
            # Sequential micro-batches: only one micro-batch's activations live at a time.
            parallel_iterations=1,
        )
        return gradients, sums

    def _new_values(self, gradients, sums, loss_scale):
        """Unscale, check, clip: the new values of all training state after all-reduced
        gradients, as [model and slots..., loss scale state..., step, non-finite count], and
        the step values (METRIC_SUMS + STEP_VALUES). Pure (no writes), so XLA can compile it
        on every strategy; `_assign` writes the values."""
        config = self.config
        gradients = [g / loss_scale for g in gradients]
        norm = tf.linalg.global_norm(gradients)
        # The norm of non-finite gradients is non-finite: one check for all of them, and the
        # same verdict on every replica since the gradients were all-reduced first.
        finite = tf.math.is_finite(norm)
        step = self.step.read_value()
        if config.clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(
                gradients, config.clip_norm, use_norm=tf.where(finite, norm, 1.0)
            )
        values = self.optimizer.new_values(
            gradients, learning_rate=self.learning_rate(step), step=step, apply=finite
        )
        values += self.loss_scale.new_values(finite)
        increment = tf.cast(finite, tf.int64)
        values += [step + increment, (self.non_finite_steps.read_value() + 1) * (1 - increment)]
        step_values = tf.concat(
            [sums, [tf.cast(finite, tf.float32), tf.where(finite, norm, 0.0)]], axis=0
        )
        return values, step_values

    def _assign(self, values):
        parameters = len(self.variables) * 3
        self.optimizer.assign(values[:parameters])
        self.loss_scale.assign(values[parameters : parameters + 2])
        for variable, value in zip(
            (self.step, self.non_finite_steps), values[parameters + 2 :], strict=True
        ):
            optimization.replica_assign(variable, value)

    def _replica_step(self, features):
        context = tf.distribute.get_replica_context()
        global_weight = context.all_reduce(
            tf.distribute.ReduceOp.SUM, tf.reduce_sum(features["masked_lm_weights"])
        )
        seed = tf.random.experimental.stateless_fold_in(
            tf.stack([tf.constant(self.config.seed, tf.int64), self.attempts.read_value()]),
            tf.cast(context.replica_id_in_sync_group, tf.int32),
        )
        loss_scale = self.loss_scale.scale.read_value()
        gradients, sums = self._compiled_gradients(features, seed, global_weight, loss_scale)
        # One all-reduce for every gradient and the metric sums.
        reduced = context.all_reduce(tf.distribute.ReduceOp.SUM, [*gradients, sums])
        new_values, step_values = self._compiled_new_values(reduced[:-1], reduced[-1], loss_scale)
        self._assign(new_values)
        optimization.replica_update(self.attempts, lambda v: v.assign_add(1))
        return step_values

    def train_loop_function(self):
        """A tf.function(iterator, steps) running `steps` updates; returns the float32 vector
        of LOOP_VALUES summed over them."""
        if self._train_loop is not None:
            return self._train_loop
        self._compile_steps()
        size = len(METRIC_SUMS) + len(STEP_VALUES)

        @tf.function
        def train_loop(iterator, steps):
            totals = tf.zeros([size + 1], tf.float32)
            for _ in tf.range(steps):
                totals += self._one_step(iterator)
            return totals

        self._train_loop = train_loop
        return train_loop

    def train_step_function(self):
        """A tf.function(iterator) running one update, with no loop inside: what the profiled
        steps run, since XProf does not take a step marker around a compiled loop as a step on
        a host trace. Returns the LOOP_VALUES vector of the step."""
        if self._train_step is None:
            self._compile_steps()
            self._train_step = tf.function(self._one_step)
        return self._train_step

    def _compile_steps(self) -> None:
        if self._compiled_gradients is None:
            jit = self.jit_compile
            self._compiled_gradients = tf.function(self._gradients, jit_compile=jit)
            self._compiled_new_values = tf.function(self._new_values, jit_compile=jit)

    def _one_step(self, iterator):
        # The time the fetch blocks: ~0 while tf.data's prefetch keeps up, the step's whole
        # input time when the run is input-bound.
        with tf.name_scope("input_fetch"):
            fetch_started = tf.timestamp()
            with tf.control_dependencies([fetch_started]):
                batch = next(iterator)
            with tf.control_dependencies(tf.nest.flatten(batch, expand_composites=True)):
                waited = tf.timestamp() - fetch_started
        values = self.strategy.run(self._replica_step, args=(batch,))
        # Every replica holds the same all-reduced values; take the first.
        totals = self.strategy.experimental_local_results(values)[0]
        return tf.concat([totals, [tf.cast(waited, tf.float32)]], axis=0)

    def eval_step_function(self):
        """A tf.function(distributed batch) returning the float32 METRIC_SUMS vector."""
        if self._eval_step is not None:
            return self._eval_step

        def replica_eval(features):
            outputs = self.model(features, training=False)
            sums = pretraining_loss_sums(outputs, features)
            vector = tf.stack([sums[name] for name in METRIC_SUMS])
            return tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, vector
            )

        compiled = tf.function(replica_eval, jit_compile=self.jit_compile)

        @tf.function
        def eval_step(features):
            values = self.strategy.run(compiled, args=(features,))
            return self.strategy.experimental_local_results(values)[0]

        self._eval_step = eval_step
        return eval_step


def summary_tag(name: str) -> str:
    """A metric's TensorBoard tag, e.g. "loss/mlm_loss" (SUMMARY_GROUPS)."""
    return f"{SUMMARY_GROUPS[name]}/{name}"


def _write_scalars(writer, metrics: Mapping[str, float], step: int) -> None:
    with writer.as_default(step=step):
        for name, value in metrics.items():
            if name not in NOT_CHARTED:
                tf.summary.scalar(summary_tag(name), value)
    writer.flush()


def _write_config(writer, config: PretrainingConfig) -> None:
    """The run's config as a text card (TensorBoard's Text tab), beside its scalars."""
    with writer.as_default(step=0):
        tf.summary.text("config", f"```\n{config.to_json_string()}\n```")
    writer.flush()


def restore_or_initialize(trainer: Trainer) -> int:
    """Resumes from the newest checkpoint in output_dir, else loads --init_checkpoint's
    weights (model only), else keeps the fresh initialisation. Returns the step.

    --init_checkpoint may be in any format of trainer/checkpoints.py: this trainer's
    (a prefix or a run's output_dir), google-research/bert's (`bert_model.ckpt`) or a Hugging
    Face folder. Weights are matched by name; parts it lacks (e.g. the heads of a bare
    `BertModel`) keep their fresh initialisation, and its training state is ignored.

    Raises:
      ValueError: init_checkpoint is missing, or does not fit the model (names, shapes or
        architecture), with the path in the message.
    """
    config = trainer.config
    # Every worker resumes from the chief's checkpoints (the others' are temporary).
    latest = tf.train.latest_checkpoint(config.output_dir)
    if latest:
        trainer.checkpoint.restore(latest).assert_existing_objects_matched()
        step = int(trainer.step.numpy())
        logging.info("resumed from %s at step %d", latest, step)
        return step
    if config.init_checkpoint:
        try:
            weights = checkpoints.load_weights(trainer.model, config.init_checkpoint)
        except (tf.errors.OpError, ValueError, FileNotFoundError) as error:
            raise ValueError(
                f"--init_checkpoint={config.init_checkpoint}: cannot load the model weights "
                f"from it ({type(error).__name__}: {error})"
            ) from error
        logging.info(
            "initialised the model weights from %s (%s)", weights.source, ", ".join(weights.parts)
        )
    return 0


def evaluate(trainer: Trainer, files: list[str], *, max_steps: int) -> dict[str, float]:
    """Masked-LM and next-sentence loss and accuracy over (at most max_steps batches of) the
    eval files; one ordered pass, full batches only."""
    config = trainer.config
    dataset = input_pipeline.distributed_dataset(
        trainer.strategy,
        files,
        global_batch_size=config.eval_batch_size,
        max_seq_length=config.max_seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq,
        is_training=False,
    )
    eval_step = trainer.eval_step_function()
    totals = np.zeros(len(METRIC_SUMS), np.float64)
    batches = 0
    for batch in dataset:
        if batches >= max_steps:
            break
        totals += eval_step(batch).numpy()
        batches += 1
    if batches == 0:
        raise ValueError(
            f"the eval files ({', '.join(files[:3])}{', ...' if len(files) > 3 else ''}) hold "
            f"fewer records than one eval batch of {config.eval_batch_size}"
        )
    sums = dict(zip(METRIC_SUMS, totals.tolist(), strict=True))
    metrics = metrics_from_sums(sums, nsp=config.nsp)
    metrics["eval_examples"] = sums["examples"]
    return metrics


def _write_eval_results(output_dir: str, metrics: Mapping[str, float], step: int) -> None:
    lines = [f"global_step = {step}"]
    lines += [f"{name} = {value:.6g}" for name, value in sorted(metrics.items())]
    storage.atomic_write(storage.join(output_dir, EVAL_RESULTS_FILE), "\n".join(lines) + "\n")


def train(trainer: Trainer, *, start_step: int) -> dict[str, float]:
    """Runs updates until the step counter reaches num_train_steps; returns the last loop's
    metrics.

    Raises:
      NonFiniteLossError: max_consecutive_non_finite_steps updates in a row had non-finite
        gradients.
    """
    config = trainer.config
    strategy = trainer.strategy
    files = input_pipeline.list_files(config.input_file)
    dataset = input_pipeline.distributed_dataset(
        strategy,
        files,
        global_batch_size=config.train_batch_size,
        max_seq_length=config.max_seq_length,
        max_predictions_per_seq=config.max_predictions_per_seq,
        is_training=True,
        shuffle_buffer_size=config.shuffle_buffer_size,
        # A resumed run must not replay the records it has already trained on in the same order.
        seed=config.seed + start_step,
    )
    iterator = iter(dataset)
    train_loop = trainer.train_loop_function()
    manager = trainer.manager
    writer = trainer.summary_writer("train")
    if start_step == 0:
        _write_config(writer, config)
    profiler = profiling.StepProfiler(
        config.profile_steps if trainer.is_chief else "",
        logdir=storage.join(config.output_dir, "train"),
    )
    flops_per_step = (
        model_flops_per_sequence(
            config.bert,
            seq_length=config.max_seq_length,
            predictions=config.max_predictions_per_seq,
        )
        * config.train_batch_size
    )
    peak = device_peak_tflops(strategy, config.peak_tflops_per_device) * 1e12
    peak *= strategy.num_replicas_in_sync
    step = start_step
    metrics: dict[str, float] = {}
    logging.info(
        "training from step %d to %d: global batch %d, %d replica(s), %d micro-batch(es)",
        step,
        config.num_train_steps,
        config.train_batch_size,
        strategy.num_replicas_in_sync,
        config.gradient_accumulation_steps,
    )
    try:
        while step < config.num_train_steps:
            steps = profiler.steps_to_run(
                step, min(config.steps_per_loop, config.num_train_steps - step)
            )
            profiler.before(step)
            started = time.perf_counter()
            try:
                if profiler.active:  # one call a step, each with its step marker
                    totals = np.zeros(len(LOOP_VALUES), np.float64)
                    for offset in range(steps):
                        with profiling.trace("train_step", step=step + offset):
                            totals += trainer.train_step_function()(iterator).numpy()
                else:
                    with profiling.trace("train_step", step=step):
                        totals = train_loop(iterator, tf.constant(steps, tf.int32))
                        totals = totals.numpy().astype(np.float64)
            except tf.errors.DataLossError as error:
                raise input_pipeline.damaged_records_error(
                    files, error=error, step=step, checkpoint=manager.latest_checkpoint
                ) from error
            elapsed = time.perf_counter() - started
            values = dict(zip(LOOP_VALUES, totals.tolist(), strict=True))
            new_step = int(trainer.step.numpy())
            metrics = metrics_from_sums(values, nsp=config.nsp)
            metrics["learning_rate"] = float(trainer.learning_rate(max(new_step - 1, 0)))
            metrics["examples_per_second"] = values["examples"] / elapsed
            metrics["tokens_per_second"] = values["tokens"] / elapsed
            metrics["loss_scale"] = float(trainer.loss_scale.scale.numpy())
            metrics["skipped_steps"] = steps - values["finite_steps"]
            if values["finite_steps"]:
                metrics["gradient_norm"] = values["gradient_norm_sum"] / values["finite_steps"]
            if peak:
                metrics["model_flops_utilization"] = flops_per_step * steps / elapsed / peak
            metrics["input_wait_share"] = min(1.0, values["input_wait_seconds"] / elapsed)
            _write_scalars(writer, metrics, new_step)
            # The first loop includes tracing and compilation: no speed to extrapolate from.
            left = (config.num_train_steps - new_step) * elapsed / steps
            if step == start_step and new_step < config.num_train_steps:
                left = math.nan
            logging.info(
                "step %d/%d  loss %.4f  mlm_loss %.4f (acc %.3f)%s  lr %.3g  %.1f examples/s%s"
                "  input wait %.0f%%%s%s  time left %s",
                new_step,
                config.num_train_steps,
                metrics["loss"],
                metrics["mlm_loss"],
                metrics["masked_lm_accuracy"],
                f"  nsp_loss {metrics['nsp_loss']:.4f} (acc {metrics['next_sentence_accuracy']:.3f})"
                if config.nsp
                else "",
                metrics["learning_rate"],
                metrics["examples_per_second"],
                f"  MFU {metrics['model_flops_utilization']:.1%}" if peak else "",
                100 * metrics["input_wait_share"],
                f"  loss scale {metrics['loss_scale']:g}"
                if config.mixed_precision == "fp16"
                else "",
                f"  skipped {metrics['skipped_steps']:g} non-finite"
                if metrics["skipped_steps"]
                else "",
                "?" if math.isnan(left) else _format_duration(left),
            )
            non_finite = int(trainer.non_finite_steps.numpy())
            if non_finite >= config.max_consecutive_non_finite_steps:
                raise NonFiniteLossError(
                    f"{non_finite} updates in a row had non-finite gradients (last finite step "
                    f"{new_step}); the run diverged: lower --learning_rate, raise "
                    "--num_warmup_steps, or use --mixed_precision=bf16/fp32. The last good "
                    f"checkpoint is in {config.output_dir}"
                )
            # At each multiple of save_checkpoints_steps that this loop passed.
            if new_step // config.save_checkpoints_steps > step // config.save_checkpoints_steps:
                with profiling.trace("checkpoint_save"):
                    manager.save(checkpoint_number=new_step, check_interval=False)
            profiler.after(new_step)
            step = new_step
    finally:
        profiler.stop()  # a trace still running at the end or on an error
    if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(f"-{step}"):
        with profiling.trace("checkpoint_save"):
            manager.save(checkpoint_number=step, check_interval=False)
    writer.close()
    return metrics


def run(config: PretrainingConfig, *, strategy: tf.distribute.Strategy) -> dict[str, float]:
    """Trains and/or evaluates as the config says; returns the eval metrics (or the last
    training metrics when there is no eval).

    Writes to config.output_dir: config.json, checkpoints (ckpt-<step>), train/ and eval/
    TensorBoard events, eval_results.txt.

    Raises:
      ValueError: the records do not match the config (shapes, vocab), or bad settings.
      FileNotFoundError: an input pattern matches nothing.
      NonFiniteLossError: training diverged.
    """
    logging.info("config:\n%s", config.to_json_string())
    train_files = input_pipeline.list_files(config.input_file) if config.do_train else []
    eval_files = (
        input_pipeline.list_files(config.eval_input_file or config.input_file)
        if config.do_eval
        else []
    )
    for files in (train_files, eval_files):
        if files:
            input_pipeline.check_inputs(
                files,
                max_seq_length=config.max_seq_length,
                max_predictions_per_seq=config.max_predictions_per_seq,
                vocab_size=config.bert.vocab_size,
            )
    input_pipeline.check_same_tokenization(train_files + eval_files)
    trainer = Trainer(config, strategy=strategy)
    try:
        return _run(trainer, eval_files)
    finally:
        trainer.close()


def _run(trainer: Trainer, eval_files: list[str]) -> dict[str, float]:
    config = trainer.config
    if trainer.is_chief:
        storage.makedirs(config.output_dir)
        storage.atomic_write(storage.join(config.output_dir, CONFIG_FILE), config.to_json_string())
        storage.atomic_write(
            storage.join(config.output_dir, "bert_config.json"), config.bert.to_json_string()
        )
    logging.info(
        "model: %d parameters, %.3g training FLOPs per sequence",
        modeling.count_parameters(trainer.model),
        model_flops_per_sequence(
            config.bert,
            seq_length=config.max_seq_length,
            predictions=config.max_predictions_per_seq,
        ),
    )
    step = restore_or_initialize(trainer)
    metrics: dict[str, float] = {}
    if config.do_train:
        metrics = train(trainer, start_step=step)
        step = int(trainer.step.numpy())
    if config.do_eval:
        metrics = evaluate(trainer, eval_files, max_steps=config.max_eval_steps)
        writer = trainer.summary_writer("eval")
        _write_scalars(writer, metrics, step)
        writer.close()
        if trainer.is_chief:
            _write_eval_results(config.output_dir, metrics, step)
        logging.info(
            "eval at step %d: %s",
            step,
            "  ".join(f"{name} {value:.4g}" for name, value in sorted(metrics.items())),
        )
    return metrics


def config_from_json(text: str) -> PretrainingConfig:
    """Reads a config.json written by `run` back into a PretrainingConfig."""
    values = json.loads(text)
    values["bert"] = BertConfig.from_dict(values["bert"])
    names = {field.name for field in dataclasses.fields(PretrainingConfig)}
    return PretrainingConfig(**{k: v for k, v in values.items() if k in names})
