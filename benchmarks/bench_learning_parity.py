"""Learning parity: BERT-tiny trained by trainer.training_loop vs Hugging Face's BertForPreTraining.

    python benchmarks/bench_learning_parity.py                          # defaults, ~7-12 min
    python benchmarks/bench_learning_parity.py --records_dir=/tmp/parity --steps=300
    python benchmarks/bench_learning_parity.py --records_dir=/tmp/parity --lockstep=300

What it measures. The same BERT-tiny (trainer.config.model_config("tiny"), vocab size from the
records' metadata.json) is pretrained twice on the same records with the same hyperparameters:

  - ours: `trainer.training_loop` (Trainer + train + evaluate), one-device strategy, fp32;
  - Hugging Face: `transformers.BertForPreTraining` built from the same BertConfig fields
    (hidden 128, 2 layers, 2 heads, 512 intermediate, exact GELU, dropout 0.1, 512 positions,
    2 token types, init std 0.02, LayerNorm eps 1e-12), trained in PyTorch on CPU by the loop
    below: the same batches in the same order (the trainer's own tf.data pipeline, same seed),
    google-research/bert's AdamW (no bias correction, epsilon 1e-6, decoupled weight decay
    0.01 not on LayerNorm and bias), linear warmup then linear decay to 0 (Google's curve),
    global-norm clipping to 1.0, loss = Σ weight·masked-LM CE / Σ weight + mean NSP CE.
    The masked-LM head runs on the gathered masked positions only, as in ours and Google's
    (the head is position-wise, so the logits are those of `model(...)` at those positions).

Each side trains in its own process, so that neither library's thread pools slow the other
(timed: PyTorch's step ran 2.7x slower after TensorFlow had trained in the same process), and
PyTorch's OpenMP threads wait passively, since tf.data's readers share the 2 cores with them.

Both are then evaluated the same way on the same eval records (one ordered pass, full batches,
no dropout): masked-LM accuracy and loss weighted by masked_lm_weights, NSP accuracy and loss.
It prints one table (steps, seconds, final train masked-LM loss, eval metrics) and the absolute
difference of eval masked-LM accuracy against the goal of issue 6 (within 0.02).

The records: unless --records_dir already holds them, the data stages run on the bundled
sample as `make demo` does (launch/demo.py's commands: extract_text wiki + books, build_vocab
8000, create_pretraining_data train with dupe factor 3 and eval from the wiki eval shards),
into --records_dir (or a temporary folder). Reruns with the same --records_dir skip that.

The two runs start from independent random initialisations (each library's own initialiser);
--same_init starts Hugging Face's model from our initial weights instead, which leaves only
dropout masks and floating-point order as differences (useful to look into a gap).

--lockstep=N is the finer check: both from the same weights, no dropout, N updates one at a
time on the same batches, printing losses, gradient norms and how far the weights drift apart,
next to a control (our trainer against itself compiled with XLA: the same arithmetic rounded in
another order). Implementations that agree drift no faster than the control.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# PyTorch's OpenMP threads spin while they wait by default; with tf.data's reader threads in
# the same process (and anything else on 2 cores) they then fight for the cores, and the
# Hugging Face step measured 4-7x slower (1.0-1.6 s instead of 0.22 s at batch 32). Passive
# waiting gives the cores back; it must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_PROJECT_ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from absl import logging  # noqa: E402

from contracts import metadata  # noqa: E402
from launch import demo  # noqa: E402
from trainer import (  # noqa: E402
    checkpoints,
    distribution,
    input_pipeline,
    modeling,
    optimization,
    training_loop,
)
from trainer import config as config_lib  # noqa: E402


@dataclasses.dataclass(frozen=True)
class ParitySettings:
    """The hyperparameters both runs share."""

    # Optimiser updates; ~2 passes over the demo's 19k training records at batch 32.
    steps: int = 1200
    # Sequences per update.
    batch_size: int = 32
    # Peak learning rate; BERT-tiny tolerates, and needs, a high one (as the demo).
    learning_rate: float = 1e-3
    # Linear warmup over this fraction of the steps, then linear decay to 0.
    warmup_fraction: float = 0.1
    # Decoupled weight decay, not on LayerNorm and biases (BERT's).
    weight_decay_rate: float = 0.01
    # Adam's epsilon, added to sqrt(v) (BERT's 1e-6; Keras and PyTorch default to 1e-7/1e-8).
    epsilon: float = 1e-6
    # Global gradient-norm clipping threshold.
    clip_norm: float = 1.0
    # Record shapes (main() takes them from the records' metadata.json).
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    # Sequences per eval batch; the eval records are read once, in order, full batches only.
    eval_batch_size: int = 32
    # Window of the last updates the "final train masked-LM loss" averages over (the trainer
    # reports one figure per loop of this many steps).
    steps_per_loop: int = 100
    # Seeds the record shuffle (shared), initialisation and dropout (each library's own).
    seed: int = 12345
    # Start Hugging Face's model from our initial weights instead of its own initialiser.
    same_init: bool = False
    # Hidden and attention-probability dropout of both models (BERT's 0.1); 0 with same_init
    # makes both runs deterministic, to tell implementation differences from dropout noise.
    dropout: float = 0.1

    @property
    def warmup_steps(self) -> int:
        return max(1, int(self.steps * self.warmup_fraction))


def tiny_config(settings: ParitySettings, *, vocab_size: int) -> config_lib.BertConfig:
    """BERT-tiny (2 layers, hidden 128, 2 heads, 512 intermediate) as both sides build it."""
    return config_lib.model_config(
        "tiny",
        vocab_size=vocab_size,
        hidden_dropout_prob=settings.dropout,
        attention_probs_dropout_prob=settings.dropout,
    )


@dataclasses.dataclass
class RunResult:
    """What one library's run produced."""

    seconds: float
    # Σ weight·CE / Σ weight over the last steps_per_loop updates.
    final_train_mlm_loss: float
    # {step at the end of a window: train masked-LM loss over the window}.
    train_curve: dict[int, float]
    # mlm_loss, masked_lm_accuracy, nsp_loss, next_sentence_accuracy, eval_examples.
    eval_metrics: dict[str, float]


# ---- records ------------------------------------------------------------------------------


def prepare_records(records_dir: Path) -> tuple[str, str]:
    """Train and eval TFRecord globs in records_dir, made by the demo's stages if missing.

    A folder counts as done when its metadata.json exists (the stages write it last).

    Returns:
      (train glob, eval glob).

    Raises:
      SystemExit: a stage failed (its output was printed).
    """
    train_dir = records_dir / "records" / "train"
    eval_dir = records_dir / "records" / "eval"
    if metadata.read(str(train_dir)) and metadata.read(str(eval_dir)):
        print(f"reusing the records in {records_dir / 'records'}", flush=True)
    else:
        # Leftovers of an interrupted run could be matched by the next stage's globs.
        for leftover in ("shards", "records"):
            shutil.rmtree(records_dir / leftover, ignore_errors=True)
        records_dir.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ, PYTHONPATH=str(_PROJECT_ROOT))
        for stage, argv in demo.stage_commands(demo.DemoConfig(output_dir=str(records_dir))):
            if "trainer.run_pretraining" in argv:
                continue  # the demo's own training step; this benchmark trains below
            started = time.monotonic()
            completed = subprocess.run(
                argv, cwd=_PROJECT_ROOT, env=environment, capture_output=True, text=True
            )
            if completed.returncode != 0:
                print(completed.stdout[-4000:], completed.stderr[-4000:], sep="\n")
                raise SystemExit(f"stage '{stage}' failed (exit {completed.returncode})")
            print(f"  {stage}: {time.monotonic() - started:.0f}s", flush=True)
    return str(train_dir / "*.tfrecord"), str(eval_dir / "*.tfrecord")


# ---- ours -----------------------------------------------------------------------------------


def our_trainer(
    settings: ParitySettings,
    bert: config_lib.BertConfig,
    *,
    train_pattern: str,
    eval_pattern: str,
    output_dir: str,
) -> training_loop.Trainer:
    """The trainer's Trainer (model, optimiser) for the run, on one device, fp32."""
    config = config_lib.PretrainingConfig(
        input_file=train_pattern,
        eval_input_file=eval_pattern,
        output_dir=output_dir,
        bert=bert,
        max_seq_length=settings.max_seq_length,
        max_predictions_per_seq=settings.max_predictions_per_seq,
        train_batch_size=settings.batch_size,
        eval_batch_size=settings.eval_batch_size,
        num_train_steps=settings.steps,
        num_warmup_steps=settings.warmup_steps,
        learning_rate=settings.learning_rate,
        weight_decay_rate=settings.weight_decay_rate,
        epsilon=settings.epsilon,
        clip_norm=settings.clip_norm,
        steps_per_loop=settings.steps_per_loop,
        save_checkpoints_steps=settings.steps,
        max_eval_steps=10**9,  # the whole eval set, as the Hugging Face side
        do_eval=True,
        strategy="one_device",
        seed=settings.seed,
    )
    for pattern in (train_pattern, eval_pattern):
        input_pipeline.check_inputs(
            input_pipeline.list_files(pattern),
            max_seq_length=config.max_seq_length,
            max_predictions_per_seq=config.max_predictions_per_seq,
            vocab_size=bert.vocab_size,
        )
    return training_loop.Trainer(config, strategy=distribution.get_strategy("one_device"))


def initial_weights(trainer: training_loop.Trainer) -> tuple[dict[str, np.ndarray], dict]:
    """Our model's weights now, {google-research/bert name: float32 array}, and {google name:
    whether the optimiser decays it}."""
    names = modeling.google_variable_names(trainer.model)
    weights = {name: variable.numpy().copy() for name, variable in names.items()}
    name_of_path = {variable.path: name for name, variable in names.items()}
    decays = {name_of_path[path]: decay for path, decay in trainer.optimizer.decays().items()}
    return weights, decays


def train_ours(trainer: training_loop.Trainer) -> RunResult:
    """Trains with training_loop.train, then training_loop.evaluate on the eval records."""
    config = trainer.config
    started = time.perf_counter()
    last = training_loop.train(trainer, start_step=0)
    seconds = time.perf_counter() - started
    eval_metrics = training_loop.evaluate(
        trainer,
        input_pipeline.list_files(config.eval_input_file),
        max_steps=config.max_eval_steps,
    )
    # One mlm_loss scalar per loop of steps_per_loop steps in the TensorBoard events.
    curve = dict(demo.read_scalars(Path(config.output_dir) / "train").get("mlm_loss", []))
    return RunResult(
        seconds=seconds,
        final_train_mlm_loss=last["mlm_loss"],
        train_curve=curve,
        eval_metrics=eval_metrics,
    )


# ---- Hugging Face ---------------------------------------------------------------------------


def bert_learning_rate(step: int, settings: ParitySettings) -> float:
    """google-research/bert's schedule for update `step` (0-based): peak · step / warmup during
    warmup, else peak · (1 − step / steps): the linear decay runs over all steps from the start,
    so the rate drops from the peak to peak · (1 − warmup / steps) when warmup ends. (Hugging
    Face's get_linear_schedule_with_warmup decays from the peak over the remaining steps
    instead; this is the trainer's curve.)"""
    if step < settings.warmup_steps:
        return settings.learning_rate * step / settings.warmup_steps
    return settings.learning_rate * (1.0 - min(step, settings.steps) / settings.steps)


class BertAdamW(torch.optim.Optimizer):
    """google-research/bert's AdamWeightDecayOptimizer in PyTorch: Adam moments without bias
    correction, epsilon added to sqrt(v), and the decoupled decay `rate · w` added to the
    update before the learning rate multiplies it. (torch.optim.AdamW bias-corrects, so its
    early steps differ; transformers 5 no longer ships an AdamW with correct_bias=False.)"""

    def __init__(self, groups, *, lr: float, betas=(0.9, 0.999), eps: float = 1e-6):
        super().__init__(groups, dict(lr=lr, betas=betas, eps=eps, weight_decay=0.0))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta_1, beta_2 = group["betas"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["m"] = torch.zeros_like(parameter)
                    state["v"] = torch.zeros_like(parameter)
                m, v, gradient = state["m"], state["v"], parameter.grad
                m.mul_(beta_1).add_(gradient, alpha=1.0 - beta_1)
                v.mul_(beta_2).addcmul_(gradient, gradient, value=1.0 - beta_2)
                update = m / (v.sqrt() + group["eps"])
                if group["weight_decay"] > 0:
                    update.add_(parameter, alpha=group["weight_decay"])
                parameter.add_(update, alpha=-group["lr"])


def huggingface_model(bert: config_lib.BertConfig) -> transformers.BertForPreTraining:
    """BertForPreTraining with exactly our BertConfig's fields (HF's config is a superset)."""
    hf_config = transformers.BertConfig(**bert.to_dict())
    return transformers.BertForPreTraining(hf_config)


def copy_initial_weights(model: transformers.BertForPreTraining, initial: dict) -> None:
    """Loads our initial weights ({google name: array}) into the PyTorch model."""
    state = {}
    for google_name, value in initial.items():
        if checkpoints.transposed_in_huggingface(google_name):
            value = value.T
        state[checkpoints.huggingface_name(google_name)] = torch.from_numpy(
            np.ascontiguousarray(value)
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    # The decoder weight and bias are tied to the word embeddings and cls.predictions.bias.
    untied = [name for name in missing if not name.startswith("cls.predictions.decoder.")]
    if untied or unexpected:
        raise SystemExit(f"--same_init: weights not matched: {untied + list(unexpected)}")


def decays_weight(name: str) -> bool:
    """Whether a (Hugging Face) parameter gets weight decay: the trainer's exclusion patterns."""
    return not any(re.search(pattern, name) for pattern in optimization.NO_DECAY_PATTERNS)


def _to_torch(batch: dict[str, tf.Tensor]) -> dict[str, torch.Tensor]:
    return {
        name: torch.from_numpy(value.numpy()).float()
        if value.dtype == tf.float32
        else torch.from_numpy(value.numpy()).long()
        for name, value in batch.items()
    }


def pretraining_sums(
    model: transformers.BertForPreTraining, batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Forward pass and the trainer's metric sums (training_loop.pretraining_loss_sums).

    Runs BertForPreTraining's own submodules (encoder, `cls.predictions`,
    `cls.seq_relationship`), but the masked-LM head only on the gathered masked positions, as
    ours and google-research/bert do: the head is position-wise, so the logits are the same
    as `model(...)`'s at those positions, without the [batch, 128, vocab] logits that would
    otherwise take most of the step on a CPU.

    Args:
      batch: input_ids, input_mask, segment_ids int64 [batch, seq]; masked_lm_positions,
        masked_lm_ids int64 and masked_lm_weights float32 [batch, preds];
        next_sentence_labels int64 [batch, 1].

    Returns:
      float32 scalars: mlm_loss_sum, mlm_weight_sum, mlm_correct_sum, nsp_loss_sum,
      nsp_correct_sum, examples.
    """
    outputs = model.bert(
        input_ids=batch["input_ids"],
        attention_mask=batch["input_mask"],
        token_type_ids=batch["segment_ids"],
    )
    sequence_output = outputs.last_hidden_state  # [batch, seq, hidden]
    positions = batch["masked_lm_positions"]  # [batch, preds]
    gathered = torch.gather(
        sequence_output, 1, positions[..., None].expand(-1, -1, sequence_output.shape[-1])
    )
    mlm_logits = model.cls.predictions(gathered)  # [batch, preds, vocab]
    nsp_logits = model.cls.seq_relationship(outputs.pooler_output)  # [batch, 2]
    labels = batch["masked_lm_ids"]
    weights = batch["masked_lm_weights"]
    mlm_loss = torch.nn.functional.cross_entropy(
        mlm_logits.flatten(0, 1), labels.flatten(), reduction="none"
    ).view_as(weights)
    nsp_labels = batch["next_sentence_labels"].view(-1)
    nsp_loss = torch.nn.functional.cross_entropy(nsp_logits, nsp_labels, reduction="none")
    return {
        "mlm_loss_sum": (weights * mlm_loss).sum(),
        "mlm_weight_sum": weights.sum(),
        "mlm_correct_sum": (weights * (mlm_logits.argmax(-1) == labels).float()).sum(),
        "nsp_loss_sum": nsp_loss.sum(),
        "nsp_correct_sum": (nsp_logits.argmax(-1) == nsp_labels).float().sum(),
        "examples": torch.tensor(float(nsp_labels.shape[0])),
    }


class HuggingFaceUpdater:
    """One training update of BertForPreTraining with the trainer's semantics.

    Loss Σ weight·CE / Σ weight over the batch plus the mean NSP loss; global-norm clipping as
    tf.clip_by_global_norm (g · clip / max(norm, clip)); BertAdamW with decay on every
    parameter but LayerNorm and biases (the trainer's patterns); Google's learning-rate curve.
    """

    def __init__(self, model: transformers.BertForPreTraining, settings: ParitySettings):
        self.model = model
        self.settings = settings
        named = list(model.named_parameters())  # tied parameters appear once
        self.parameters = [parameter for _, parameter in named]
        self.optimizer = BertAdamW(
            [
                {
                    "params": [p for n, p in named if decays_weight(n)],
                    "weight_decay": settings.weight_decay_rate,
                },
                {"params": [p for n, p in named if not decays_weight(n)], "weight_decay": 0.0},
            ],
            lr=0.0,
            eps=settings.epsilon,
        )

    def update(self, batch: dict[str, torch.Tensor], *, step: int) -> tuple[dict, float]:
        """Update number `step` (0-based) on one batch; returns the metric sums (float) and
        the gradient norm before clipping.

        Raises:
          SystemExit: non-finite gradients (the trainer would skip; here that is a failure).
        """
        settings = self.settings
        sums = pretraining_sums(self.model, batch)
        loss = sums["mlm_loss_sum"] / sums["mlm_weight_sum"].clamp_min(1e-12)
        loss = loss + sums["nsp_loss_sum"] / settings.batch_size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        gradients = [parameter.grad for parameter in self.parameters]
        # Sums of squares in float64: torch.linalg.vector_norm (and so clip_grad_norm_) came
        # out 3e-4 too small on the [8000, 128] embedding gradient here (torch 2.13 CPU), while
        # float64 sums agree with TensorFlow's global norm to 1e-7.
        norm = math.sqrt(sum(gradient.double().square().sum().item() for gradient in gradients))
        if not math.isfinite(norm):
            raise SystemExit(f"Hugging Face run: non-finite gradients at step {step}")
        if settings.clip_norm > 0:
            torch._foreach_mul_(gradients, settings.clip_norm / max(norm, settings.clip_norm))
        for group in self.optimizer.param_groups:
            group["lr"] = bert_learning_rate(step, settings)
        self.optimizer.step()
        return {name: value.item() for name, value in sums.items()}, norm


def _train_dataset(settings: ParitySettings, train_files: list[str]) -> tf.data.Dataset:
    # The trainer's own input pipeline with the trainer's seed (train() seeds it with
    # config.seed + start step 0): the same batches in the same order.
    return input_pipeline.make_dataset(
        train_files,
        batch_size=settings.batch_size,
        max_seq_length=settings.max_seq_length,
        max_predictions_per_seq=settings.max_predictions_per_seq,
        is_training=True,
        seed=settings.seed,
    )


def train_huggingface(
    settings: ParitySettings,
    model: transformers.BertForPreTraining,
    *,
    train_files: list[str],
    eval_files: list[str],
) -> RunResult:
    """Trains BertForPreTraining in PyTorch on the trainer's batches, then evaluates it."""
    updater = HuggingFaceUpdater(model, settings)
    model.train()
    curve: dict[int, float] = {}
    window_loss = window_weight = 0.0
    started = time.perf_counter()
    # An iterator over the endless dataset, as the trainer's: exhausting a `take(steps)` of it
    # instead cost 16 s of waiting at the end, inside the timed loop.
    iterator = iter(_train_dataset(settings, train_files))
    for step in range(settings.steps):
        sums, _ = updater.update(_to_torch(next(iterator)), step=step)
        window_loss += sums["mlm_loss_sum"]
        window_weight += sums["mlm_weight_sum"]
        if (step + 1) % settings.steps_per_loop == 0 or step + 1 == settings.steps:
            curve[step + 1] = window_loss / max(window_weight, 1e-12)
            logging.info(
                "hugging face step %d/%d  mlm_loss %.4f  %.1f examples/s",
                step + 1,
                settings.steps,
                curve[step + 1],
                (step + 1) * settings.batch_size / (time.perf_counter() - started),
            )
            window_loss = window_weight = 0.0
    seconds = time.perf_counter() - started
    return RunResult(
        seconds=seconds,
        final_train_mlm_loss=curve[max(curve)],
        train_curve=curve,
        eval_metrics=evaluate_huggingface(model, eval_files, settings=settings),
    )


@torch.no_grad()
def evaluate_huggingface(
    model: transformers.BertForPreTraining, eval_files: list[str], *, settings: ParitySettings
) -> dict[str, float]:
    """As training_loop.evaluate: one ordered pass of full batches, no dropout."""
    model.eval()
    dataset = input_pipeline.make_dataset(
        eval_files,
        batch_size=settings.eval_batch_size,
        max_seq_length=settings.max_seq_length,
        max_predictions_per_seq=settings.max_predictions_per_seq,
        is_training=False,
    )
    totals: dict[str, float] = {}
    for batch in dataset:
        for name, value in pretraining_sums(model, _to_torch(batch)).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    metrics = training_loop.metrics_from_sums({**totals, "tokens": 0.0})
    metrics["eval_examples"] = totals["examples"]
    return metrics


def lockstep(
    settings: ParitySettings,
    bert: config_lib.BertConfig,
    *,
    train_pattern: str,
    eval_pattern: str,
    output_dir: str,
    steps: int,
) -> str:
    """Both sides from the same weights and without dropout, one update at a time on the same
    batches, in one process (no timings), with a control: our trainer against itself compiled
    with XLA (the same arithmetic, rounded in another order).

    Where the implementations agree, losses, gradient norms and weights agree to float32
    rounding, and the rounding differences then grow at the same pace for both pairs (fastest
    through loss spikes at the peak learning rate); a real difference shows from the first
    steps and outgrows the control.

    Returns:
      a markdown table at steps 1, 2, 5, 10, 20, 50, ... and `steps`: both losses, both
      gradient norms (before clipping), and ||w_a − w_b|| / ||w_a − w_initial|| over all
      weights for ours vs Hugging Face and for ours vs ours with XLA.
    """
    if bert.hidden_dropout_prob or bert.attention_probs_dropout_prob:
        raise ValueError("lockstep needs a model without dropout")
    torch.set_num_threads(2)
    trainer = our_trainer(
        settings,
        bert,
        train_pattern=train_pattern,
        eval_pattern=eval_pattern,
        output_dir=f"{output_dir}/eager",
    )
    config = trainer.config
    # Same seed, so the same initial weights; XLA fuses and reorders the float32 arithmetic.
    control = training_loop.Trainer(
        dataclasses.replace(config, jit_compile=True, output_dir=f"{output_dir}/xla"),
        strategy=trainer.strategy,
    )
    initial, decays = initial_weights(trainer)
    model = huggingface_model(bert)
    copy_initial_weights(model, initial)
    print(check_same_model(model, initial=initial, decays=decays), flush=True)
    model.train()
    updater = HuggingFaceUpdater(model, settings)
    train_files = input_pipeline.list_files(train_pattern)

    def our_batches(run: training_loop.Trainer):
        return iter(
            input_pipeline.distributed_dataset(
                run.strategy,
                train_files,
                global_batch_size=config.train_batch_size,
                max_seq_length=config.max_seq_length,
                max_predictions_per_seq=config.max_predictions_per_seq,
                is_training=True,
                shuffle_buffer_size=config.shuffle_buffer_size,
                seed=config.seed,
            )
        )

    ours_batches, control_batches = our_batches(trainer), our_batches(control)
    theirs_batches = iter(_train_dataset(settings, train_files))
    ours_loop, control_loop = trainer.train_loop_function(), control.train_loop_function()
    ours_variables = modeling.google_variable_names(trainer.model)
    control_variables = modeling.google_variable_names(control.model)
    theirs_parameters = dict(model.named_parameters())

    def theirs_weight(name: str) -> np.ndarray:
        value = theirs_parameters[checkpoints.huggingface_name(name)].detach().numpy()
        return value.T if checkpoints.transposed_in_huggingface(name) else value

    def relative_difference(other) -> float:
        difference = movement = 0.0
        for name, variable in ours_variables.items():
            ours = variable.numpy()
            difference += float(np.sum((ours - other(name)) ** 2))
            movement += float(np.sum((ours - initial[name]) ** 2))
        return math.sqrt(difference) / max(math.sqrt(movement), 1e-30)

    def loss(sums: dict) -> float:
        mlm = sums["mlm_loss_sum"] / sums["mlm_weight_sum"]
        return mlm + sums["nsp_loss_sum"] / sums["examples"]

    report_at = {1, 2, 5, steps} | {
        multiple for multiple in (10, 20, 50, 100, 150, 200, 300, 500, 1000) if multiple <= steps
    }
    lines = [
        "| step | loss ours | loss HF | grad norm ours | grad norm HF "
        "| weights ours vs HF | weights ours vs ours+XLA (control) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    names = training_loop.LOOP_VALUES
    one = tf.constant(1, tf.int32)
    for step in range(steps):
        values = ours_loop(ours_batches, one).numpy().tolist()
        control_loop(control_batches, one)
        ours_sums = dict(zip(names, values, strict=True))
        theirs_sums, theirs_norm = updater.update(_to_torch(next(theirs_batches)), step=step)
        if step + 1 in report_at:
            lines.append(
                f"| {step + 1} | {loss(ours_sums):.5f} | {loss(theirs_sums):.5f} | "
                f"{ours_sums['gradient_norm_sum']:.4f} | {theirs_norm:.4f} | "
                f"{relative_difference(theirs_weight):.1e} | "
                f"{relative_difference(lambda name: control_variables[name].numpy()):.1e} |"
            )
            print(lines[-1], flush=True)
    return "\n".join(lines)


# ---- checks and report ----------------------------------------------------------------------


def check_same_model(
    model: transformers.BertForPreTraining,
    *,
    initial: dict[str, np.ndarray],
    decays: dict[str, bool],
) -> str:
    """Both models have the same parameters and the same weight-decay split; a line saying so.

    Raises:
      SystemExit: they differ (then the comparison would mean nothing).
    """
    ours_total = sum(value.size for value in initial.values())
    ours_decayed = sum(initial[name].size for name, decay in decays.items() if decay)
    named = list(model.named_parameters())
    theirs_total = sum(p.numel() for _, p in named)
    theirs_decayed = sum(p.numel() for n, p in named if decays_weight(n))
    expected = {checkpoints.huggingface_name(name) for name in initial}
    theirs_names = {name for name, _ in named}
    if (ours_total, ours_decayed) != (theirs_total, theirs_decayed) or expected != theirs_names:
        raise SystemExit(
            f"the models differ: ours {ours_total:,} parameters ({ours_decayed:,} decayed), "
            f"Hugging Face {theirs_total:,} ({theirs_decayed:,} decayed); names only in ours: "
            f"{sorted(expected - theirs_names)}, only in theirs: {sorted(theirs_names - expected)}"
        )
    return (
        f"same model: {ours_total:,} parameters in {len(initial)} tensors, "
        f"{ours_decayed:,} of them with weight decay, in both"
    )


def report(settings: ParitySettings, ours: RunResult, theirs: RunResult) -> str:
    """The comparison table (markdown) and the verdict against the 0.02 goal."""
    rows = [
        (f"steps (batch {settings.batch_size})", f"{settings.steps}", f"{settings.steps}"),
        ("train seconds", f"{ours.seconds:.0f}", f"{theirs.seconds:.0f}"),
        (
            f"final train MLM loss (last {settings.steps_per_loop} steps)",
            f"{ours.final_train_mlm_loss:.4f}",
            f"{theirs.final_train_mlm_loss:.4f}",
        ),
    ]
    for label, name in (
        ("eval MLM accuracy", "masked_lm_accuracy"),
        ("eval MLM loss", "mlm_loss"),
        ("eval NSP accuracy", "next_sentence_accuracy"),
        ("eval NSP loss", "nsp_loss"),
        ("eval sequences", "eval_examples"),
    ):
        fmt = "{:.0f}" if name == "eval_examples" else "{:.4f}"
        rows.append(
            (label, fmt.format(ours.eval_metrics[name]), fmt.format(theirs.eval_metrics[name]))
        )
    lines = [
        "| | ours (trainer) | Hugging Face BertForPreTraining |",
        "|---|---:|---:|",
        *(f"| {label} | {a} | {b} |" for label, a, b in rows),
    ]
    gap = abs(ours.eval_metrics["masked_lm_accuracy"] - theirs.eval_metrics["masked_lm_accuracy"])
    lines.append("")
    lines.append(
        f"|Δ eval MLM accuracy| = {gap:.4f} (goal ≤ 0.02: {'met' if gap <= 0.02 else 'NOT met'})"
    )
    lines.append("")
    lines.append(f"train MLM loss per window of {settings.steps_per_loop} steps:")
    lines.append("| step | ours | Hugging Face |")
    lines.append("|---:|---:|---:|")
    for step in sorted(set(ours.train_curve) | set(theirs.train_curve)):
        a, b = ours.train_curve.get(step, math.nan), theirs.train_curve.get(step, math.nan)
        lines.append(f"| {step} | {a:.4f} | {b:.4f} |")
    return "\n".join(lines)


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores; TensorFlow {tf.__version__}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )


# ---- one process per side ------------------------------------------------------------------
#
# Each side trains in its own process: after our TensorFlow training ran in a process, the
# PyTorch step in that same process measured 2.7x slower (0.68 s instead of 0.25 s: TensorFlow's
# thread pools stay alive), so one process would time the second side unfairly.


def _job_paths(scratch: Path) -> dict[str, Path]:
    return {
        "job": scratch / "job.json",  # settings, record globs, vocab size
        "initial": scratch / "initial_weights.npz",  # ours, by google-research/bert name
        "decays": scratch / "decays.json",  # ours: {google name: weight decay applies}
        "ours": scratch / "ours.json",  # RunResult
        "huggingface": scratch / "huggingface.json",  # RunResult
    }


def _read_job(scratch: Path) -> tuple[ParitySettings, config_lib.BertConfig, dict]:
    job = json.loads(_job_paths(scratch)["job"].read_text())
    settings = ParitySettings(**job["settings"])
    return settings, tiny_config(settings, vocab_size=job["vocab_size"]), job


def _write_result(path: Path, result: RunResult) -> None:
    path.write_text(json.dumps(dataclasses.asdict(result)))


def _read_result(path: Path) -> RunResult:
    values = json.loads(path.read_text())
    values["train_curve"] = {int(step): loss for step, loss in values["train_curve"].items()}
    return RunResult(**values)


def child_ours(scratch: Path) -> None:
    """Our side: trains, evaluates, and leaves the initial weights for the other side."""
    settings, bert, job = _read_job(scratch)
    paths = _job_paths(scratch)
    trainer = our_trainer(
        settings,
        bert,
        train_pattern=job["train_pattern"],
        eval_pattern=job["eval_pattern"],
        output_dir=str(scratch / "model"),
    )
    initial, decays = initial_weights(trainer)
    np.savez(paths["initial"], **initial)
    paths["decays"].write_text(json.dumps(decays))
    _write_result(paths["ours"], train_ours(trainer))


def child_huggingface(scratch: Path) -> None:
    """Hugging Face's side: checks the model against ours, trains, evaluates."""
    settings, bert, job = _read_job(scratch)
    paths = _job_paths(scratch)
    torch.set_num_threads(2)
    with np.load(paths["initial"]) as archive:
        initial = {name: archive[name] for name in archive.files}
    decays = json.loads(paths["decays"].read_text())
    torch.manual_seed(settings.seed)  # Hugging Face's initialiser and the dropout masks
    model = huggingface_model(bert)
    if settings.same_init:
        copy_initial_weights(model, initial)
    print(check_same_model(model, initial=initial, decays=decays), flush=True)
    result = train_huggingface(
        settings,
        model,
        train_files=input_pipeline.list_files(job["train_pattern"]),
        eval_files=input_pipeline.list_files(job["eval_pattern"]),
    )
    _write_result(paths["huggingface"], result)


def run_child(side: str, scratch: Path) -> RunResult:
    """Runs one side in a fresh process (its log goes to this one's stderr).

    Raises:
      SystemExit: the child failed.
    """
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        f"--child={side}",
        f"--scratch={scratch}",
    ]
    completed = subprocess.run(argv, cwd=_PROJECT_ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"the {side} run failed (exit {completed.returncode})")
    return _read_result(_job_paths(scratch)[side])


def main() -> None:
    defaults = ParitySettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch_size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning_rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--records_dir",
        default="",
        help="where the data stages write (shards/, vocab.txt, records/); reused when "
        "records/train and records/eval hold metadata.json; default: a temporary folder",
    )
    parser.add_argument(
        "--same_init",
        action="store_true",
        help="start Hugging Face's model from our initial weights",
    )
    parser.add_argument(
        "--dropout",
        type=float,
        default=defaults.dropout,
        help="dropout of both models; 0 with --same_init: deterministic runs",
    )
    parser.add_argument(
        "--lockstep",
        type=int,
        default=0,
        metavar="STEPS",
        help="instead of the comparison: both from the same weights, no dropout, this many "
        "updates in lockstep, printing how far losses and weights drift apart",
    )
    parser.add_argument("--child", choices=("ours", "huggingface"), help=argparse.SUPPRESS)
    parser.add_argument("--scratch", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.set_verbosity(logging.INFO)
    if args.child:
        {"ours": child_ours, "huggingface": child_huggingface}[args.child](Path(args.scratch))
        return

    settings = ParitySettings(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        same_init=args.same_init,
        dropout=args.dropout,
    )
    print(f"machine: {_machine()}")
    # Our schedule and the PyTorch side's are separate implementations: check they agree.
    ours_schedule = optimization.learning_rate(
        tf.range(settings.steps + 1),
        peak_learning_rate=settings.learning_rate,
        num_train_steps=settings.steps,
        num_warmup_steps=settings.warmup_steps,
    ).numpy()
    theirs_schedule = [bert_learning_rate(s, settings) for s in range(settings.steps + 1)]
    np.testing.assert_allclose(ours_schedule, theirs_schedule, rtol=1e-5, atol=1e-9)

    with tempfile.TemporaryDirectory(prefix="learning_parity_") as scratch:
        scratch = Path(scratch)
        records_dir = Path(args.records_dir) if args.records_dir else scratch / "data"
        started = time.monotonic()
        train_pattern, eval_pattern = prepare_records(records_dir)
        print(f"records ready in {time.monotonic() - started:.0f}s", flush=True)
        made = metadata.read(input_pipeline.list_files(train_pattern)[0].rsplit("/", 1)[0])
        settings = dataclasses.replace(
            settings,
            max_seq_length=int(made["flags"]["max_seq_length"]),
            max_predictions_per_seq=int(made["flags"]["max_predictions_per_seq"]),
        )
        print(f"settings: {settings}", flush=True)
        print(f"model: {tiny_config(settings, vocab_size=int(made['vocab_size']))}")
        job = {
            "settings": dataclasses.asdict(settings),
            "train_pattern": train_pattern,
            "eval_pattern": eval_pattern,
            "vocab_size": int(made["vocab_size"]),
        }
        _job_paths(scratch)["job"].write_text(json.dumps(job))
        if args.lockstep:
            settings = dataclasses.replace(settings, dropout=0.0, same_init=True)
            table = lockstep(
                settings,
                tiny_config(settings, vocab_size=job["vocab_size"]),
                train_pattern=train_pattern,
                eval_pattern=eval_pattern,
                output_dir=str(scratch / "model"),
                steps=args.lockstep,
            )
            print()
            print(table)
            return
        ours = run_child("ours", scratch)
        theirs = run_child("huggingface", scratch)
    print()
    print(report(settings, ours, theirs))


if __name__ == "__main__":
    main()
