"""Typed, frozen configs of the trainer: the model (`BertConfig`) and one pretraining run.

`BertConfig` has exactly the fields of google-research/bert's `bert_config.json`, so any config
file Google (or Hugging Face, whose `config.json` is a superset) publishes loads unchanged, and
what this project writes loads there. `MODEL_SIZES` holds the sizes of Turc et al. 2019
("Well-Read Students Learn Better", the 24 compact BERTs) plus the paper's base and large.

`PretrainingConfig` is the whole run. The flags of `python -m trainer.run_pretraining` are
derived from its fields (`contracts.config_flags`: the defaults and the comments below are the
flags' defaults and help), all but `bert`, which three flags of the program choose
(`--bert_config_file`, or `--model_size` with `--vocab_size`). It is logged at start and written
to `<output_dir>/config.json`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from contracts import batching, storage


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """BERT's hyperparameters, field for field as in google-research/bert's bert_config.json."""

    # Rows of the word-embedding table; must equal the vocab file's line count.
    vocab_size: int = 30522
    # Width of every token representation (H).
    hidden_size: int = 768
    # Transformer layers (L).
    num_hidden_layers: int = 12
    # Attention heads (A); hidden_size must be a multiple. Turc et al. use H / 64.
    num_attention_heads: int = 12
    # Width of the feed-forward layer inside each transformer layer (4H in the paper).
    intermediate_size: int = 3072
    # "gelu" (exact, erf-based, as Hugging Face reads Google's configs), "gelu_new" (tanh
    # approximation, google-research/bert's own code), "relu", "tanh", "silu"/"swish".
    hidden_act: str = "gelu"
    # Dropout on embeddings, attention output and feed-forward output.
    hidden_dropout_prob: float = 0.1
    # Dropout on the attention probabilities.
    attention_probs_dropout_prob: float = 0.1
    # Longest sequence the learned position table covers.
    max_position_embeddings: int = 512
    # Segment (token type) ids: 2 for sentence A / sentence B.
    type_vocab_size: int = 2
    # Standard deviation of the truncated-normal initialiser of every weight matrix.
    initializer_range: float = 0.02
    # LayerNorm epsilon; 1e-12 is what google-research/bert's layer_norm used.
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of "
                f"num_attention_heads {self.num_attention_heads}"
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> BertConfig:
        """Builds a config from a bert_config.json dict; keys this class lacks are ignored
        (Hugging Face configs carry many), so the file's own fields win over defaults."""
        names = {field.name for field in dataclasses.fields(cls)}
        known = {key: value for key, value in values.items() if key in names}
        return cls(**known)

    @classmethod
    def from_json_file(cls, path: str) -> BertConfig:
        """Reads Google's bert_config.json (local or gs://).

        Raises:
          ValueError: the file is not JSON or not a BERT config; the message names the file.
        """
        try:
            values = json.loads(storage.read_text(path))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(values, dict) or "hidden_size" not in values:
            raise ValueError(f"{path}: not a BERT config (no 'hidden_size' key)")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


# (num_hidden_layers, hidden_size) of Turc et al. 2019's compact models and the paper's two.
# Heads are hidden_size / 64 and the feed-forward width 4 * hidden_size, as in both papers.
_SIZES = {
    "tiny": (2, 128),
    "mini": (4, 256),
    "small": (4, 512),
    "medium": (8, 512),
    "base": (12, 768),
    "large": (24, 1024),
}
MODEL_SIZES = tuple(_SIZES)


def model_config(size: str, *, vocab_size: int = 30522, **overrides: Any) -> BertConfig:
    """The BertConfig of a named size.

    Args:
      size: one of MODEL_SIZES ("tiny", "mini", "small", "medium", "base", "large").
      vocab_size: rows of the word-embedding table.
      **overrides: any other BertConfig field (e.g. hidden_dropout_prob=0.0).

    Raises:
      ValueError: unknown size.
    """
    if size not in _SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {', '.join(MODEL_SIZES)}")
    layers, hidden = _SIZES[size]
    values = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        intermediate_size=4 * hidden,
    )
    values.update(overrides)
    return BertConfig(**values)


OPTIMIZERS = ("adamw", "lamb")
MIXED_PRECISIONS = ("fp32", "bf16", "fp16")
STRATEGIES = ("auto", "tpu", "mirrored", "multi_worker", "one_device")


def parse_profile_steps(text: str) -> tuple[int, int] | None:
    """ "START,STOP" -> (START, STOP); "" -> None.

    Raises:
      ValueError: not two integers with 0 <= START < STOP; the message quotes the flag.
    """
    if not text:
        return None
    parts = text.split(",")
    try:
        start, stop = (int(part) for part in parts)
    except ValueError:
        raise ValueError(
            f"--profile_steps={text!r}: expected START,STOP (two step numbers, e.g. 10,15)"
        ) from None
    if not 0 <= start < stop:
        raise ValueError(f"--profile_steps={text!r}: need 0 <= START < STOP")
    return start, stop


@dataclasses.dataclass(frozen=True)
class PretrainingConfig:
    """One pretraining run. Field names follow the flags of `trainer.run_pretraining`."""

    # Comma-separated globs of training TFRecords (local or gs://).
    input_file: str = ""
    # Folder for checkpoints, TensorBoard events, config.json and eval_results.txt.
    output_dir: str = ""
    # The model; from --model_size or --bert_config_file.
    bert: BertConfig = dataclasses.field(default_factory=BertConfig, metadata={"flag": False})
    # Comma-separated globs of eval TFRecords; empty: --input_file.
    eval_input_file: str = ""
    # A checkpoint to start the weights from: this trainer's, google-research/bert's or a
    # Hugging Face folder (trainer/checkpoints.py tells them apart); optimiser state and
    # step are not loaded, heads it lacks keep their fresh initialisation. Ignored when
    # output_dir already holds a checkpoint: resuming wins.
    init_checkpoint: str = ""
    # Tokens per sequence; must match the records (the flag's default: their metadata.json)
    max_seq_length: int = 128
    # Masked positions per sequence; must match the records (flag default: their metadata.json)
    max_predictions_per_seq: int = 20
    # Global batch of one optimiser update, over all replicas and accumulation micro-steps.
    train_batch_size: int = 32
    # Global eval batch.
    eval_batch_size: int = batching.DEFAULT_EVAL_BATCH_SIZE
    # Optimiser updates to train for.
    num_train_steps: int = 100_000
    # Linear warmup from 0 to learning_rate over these steps.
    num_warmup_steps: int = 10_000
    # Peak learning rate (1e-4 for BERT-base from scratch in the paper).
    learning_rate: float = 1e-4
    # Learning rate at num_train_steps (polynomial decay from the peak).
    end_learning_rate: float = 0.0
    # Power of the polynomial decay; 1.0 is google-research/bert's linear decay.
    decay_power: float = 1.0
    # "adamw" (google-research/bert's AdamWeightDecayOptimizer) or "lamb" (You et al. 2019).
    optimizer: str = dataclasses.field(default="adamw", metadata={"enum": OPTIMIZERS})
    # Decoupled weight decay, not applied to LayerNorm and bias (as google-research/bert).
    weight_decay_rate: float = 0.01
    beta_1: float = 0.9  # Adam's first-moment decay
    beta_2: float = 0.999  # Adam's second-moment decay
    # 1e-6 as google-research/bert (Keras' default is 1e-7).
    epsilon: float = 1e-6
    # Clip the global gradient norm to this; 0 disables.
    clip_norm: float = 1.0
    # Micro-batches per update: each replica runs them one after another and sums gradients;
    # replicas all-reduce once per update.
    gradient_accumulation_steps: int = 1
    # "fp32", "bf16" (TPU, recent GPUs/CPUs) or "fp16" (GPUs; dynamic loss scaling).
    mixed_precision: str = dataclasses.field(default="fp32", metadata={"enum": MIXED_PRECISIONS})
    # Initial loss scale for fp16; halves on every non-finite step, doubles after
    # loss_scale_growth_steps finite ones.
    initial_loss_scale: float = 2.0**15
    loss_scale_growth_steps: int = 2000  # finite fp16 steps before the loss scale doubles
    # Stop when this many updates in a row produce non-finite gradients.
    max_consecutive_non_finite_steps: int = 50
    # Train the next-sentence head too (BERT); False trains masked LM only (RoBERTa-style).
    nsp: bool = True
    # Compile the train and eval steps with XLA; None: on TPUs and GPUs, off on CPUs (where
    # TensorFlow's oneDNN kernels are faster than XLA's CPU backend).
    jit_compile: bool | None = None
    # "auto", "tpu", "mirrored", "multi_worker" or "one_device".
    strategy: str = dataclasses.field(default="auto", metadata={"enum": STRATEGIES})
    # TPU name, "local" on a TPU VM, or grpc:// address; set --strategy=tpu when given.
    tpu: str = ""
    # Steps per call into the compiled loop; logging and summaries happen between calls.
    steps_per_loop: int = 100
    # Checkpoint every N steps (rounded up to a steps_per_loop boundary) and at the end.
    save_checkpoints_steps: int = 1000
    # Checkpoints kept in output_dir.
    keep_checkpoint_max: int = 5
    # Eval batches at most (the eval set is read once, no repeat).
    max_eval_steps: int = 100
    do_train: bool = True  # train (to num_train_steps, resuming from output_dir's checkpoint)
    do_eval: bool = False  # evaluate on eval_input_file after training
    # Peak TFLOP/s of one device for the MFU scalar; 0 looks the GPU up in a table of known
    # parts (dense bf16/fp16 peak) and logs no MFU where the device is unknown (CPUs, TPUs).
    peak_tflops_per_device: float = 0.0
    # Shuffle buffer of records per host; files are shuffled too.
    shuffle_buffer_size: int = 10_000
    # Seeds the file and record shuffle and the dropout masks.
    seed: int = 12345
    # "START,STOP": a TensorFlow profiler trace of those steps into output_dir/train, for
    # TensorBoard's Profile tab (trainer/profiling.py); "": none
    profile_steps: str = ""

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ValueError(
                f"mixed_precision must be one of {MIXED_PRECISIONS}, got {self.mixed_precision!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in (
            "max_seq_length",
            "max_predictions_per_seq",
            "train_batch_size",
            "eval_batch_size",
            "gradient_accumulation_steps",
            "steps_per_loop",
            "save_checkpoints_steps",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        parse_profile_steps(self.profile_steps)
        if self.num_train_steps < 0 or self.num_warmup_steps < 0:
            raise ValueError("num_train_steps and num_warmup_steps must not be negative")
        if self.max_seq_length > self.bert.max_position_embeddings:
            raise ValueError(
                f"max_seq_length {self.max_seq_length} exceeds the model's "
                f"max_position_embeddings {self.bert.max_position_embeddings}"
            )
        if self.train_batch_size % self.gradient_accumulation_steps:
            raise ValueError(
                f"train_batch_size {self.train_batch_size} is not a multiple of "
                f"gradient_accumulation_steps {self.gradient_accumulation_steps}"
            )
        if self.do_train and not self.input_file:
            raise ValueError("input_file is required to train")
        if not self.output_dir:
            raise ValueError("output_dir is required")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
