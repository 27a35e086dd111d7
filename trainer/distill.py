r"""Task distillation: a small student learns a fine-tuned teacher's predictions.

  python -m trainer.distill --teacher_dir=runs/sst2_base --output_dir=runs/sst2_small \
      --student_layers=3 --temperature=2 --alpha=0.5 --num_train_epochs=3

--teacher_dir is a `trainer.run_classifier` --output_dir (its task, data, vocab and
max_seq_length are the student's too). The student is one of:

  --student_layers=K            the teacher's embeddings, first K layers, pooler and head
                                (DistilBERT's initialisation, taken from the fine-tuned teacher)
  --student_init_checkpoint=P   a pretrained checkpoint of any format trainer.checkpoints reads
                                (e.g. the BERT-tiny the pipeline pretrains), with the same vocab
  --student_config_file=F       a bert_config.json, randomly initialised

The loss (Hinton et al. 2015): alpha * T^2 * KL(teacher || student) on the logits at temperature
T, plus (1 - alpha) * the task's loss on the labels (regression: squared errors to the teacher's
score and to the label). With --hidden_weight > 0, TinyBERT's hidden-state matching is added:
the mean squared error between each student layer's output (projected to the teacher's width by
a learned matrix when the widths differ) and the teacher layer it is mapped to (uniformly:
student layer m <- teacher layer m * N / M; the embeddings to the embeddings), over real tokens.

--output_dir is a run_classifier-shaped folder (checkpoints, classifier_config.json, vocab.txt,
eval_results.json, TensorBoard events), so trainer.export_classifier and trainer.quantize take
it as they take a fine-tuned one. Training is run_classifier's own loop (strategies, AdamW with
warmup and decay, evaluation each epoch, resume), with this loss.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import keras
import tensorflow as tf
from absl import logging

from contracts import batching, command_line, config_flags, storage
from trainer import checkpoints, distribution, modeling, run_classifier
from trainer.config import STRATEGIES, BertConfig

STUDENT_CONFIG_FILE = "student_bert_config.json"


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """One distillation run; the flags of `python -m trainer.distill` come from it."""

    teacher_dir: str  # a trainer.run_classifier --output_dir: the fine-tuned teacher
    output_dir: str  # the student's run folder (run_classifier's layout)
    student_layers: int = 0  # K > 0: the teacher's first K layers as the student
    student_init_checkpoint: str = ""  # a pretrained student (any checkpoint format)
    student_config_file: str = ""  # the student's bert_config.json ("": the checkpoint's own)
    temperature: float = 2.0  # softens both sides' logits in the soft-target loss
    alpha: float = 0.5  # weight of the soft targets; the labels get 1 - alpha
    hidden_weight: float = 0.0  # > 0: add TinyBERT's hidden-state matching, this weighted
    data_dir: str = ""  # the task's files; "": the teacher's --data_dir
    do_eval: bool = True  # evaluate on dev (every epoch)
    do_predict: bool = False  # write the test predictions as GLUE submission files
    train_batch_size: int = 32  # global batch of one update
    # global batch of evaluation and prediction
    eval_batch_size: int = batching.DEFAULT_CLASSIFIER_EVAL_BATCH_SIZE
    learning_rate: float = 5e-5  # peak learning rate
    num_train_epochs: float = 3.0  # passes over the train set
    warmup_proportion: float = 0.1  # share of the updates with a linear warmup
    # "fp32", or "bf16" (the teacher runs in float32 either way)
    mixed_precision: str = dataclasses.field(default="fp32", metadata={"enum": ("fp32", "bf16")})
    # "auto", "tpu", "mirrored", "multi_worker" or "one_device"
    strategy: str = dataclasses.field(default="auto", metadata={"enum": STRATEGIES})
    tpu: str = ""  # TPU name, "local" on a TPU VM, or grpc:// address
    seed: int = 12345  # seeds the student's new weights, the shuffle and dropout


def layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """For each of the student's hidden states (embeddings, layer 1..M), the teacher's it
    learns from: TinyBERT's uniform mapping, m -> m * N / M."""
    if student_layers > teacher_layers:
        raise ValueError(
            f"the student has {student_layers} layers, more than the teacher's {teacher_layers}"
        )
    return [m * teacher_layers // student_layers for m in range(student_layers + 1)]


class Distillation(run_classifier.Objective):
    """run_classifier's objective for a student: soft targets, labels, hidden states."""

    def __init__(self, config: DistillConfig, teacher, *, student_layers: int):
        super().__init__()
        self.config = config
        self.teacher = teacher
        self.copy_layers = student_layers if config.student_layers else 0
        self.mapping = layer_map(student_layers, teacher.config.num_hidden_layers)
        self.projections: list = []

    def build(self, model) -> None:
        if self.config.hidden_weight <= 0:
            return
        width, teacher_width = model.config.hidden_size, self.teacher.config.hidden_size
        if width == teacher_width:
            return
        for index in range(len(self.mapping)):
            projection = keras.layers.Dense(
                teacher_width,
                use_bias=False,
                kernel_initializer=keras.initializers.GlorotUniform(seed=self.config.seed + index),
                name=f"projection_{index}",
            )
            projection.build((None, None, width))
            self.projections.append(projection)
        self.variables = [p.kernel for p in self.projections]

    def initialize(self, model) -> None:
        if not self.copy_layers:
            return
        # The student's variables are the teacher's first K layers under the same names.
        teacher = modeling.google_variable_names(self.teacher.bert)
        for name, variable in modeling.google_variable_names(model.bert).items():
            variable.assign(teacher[name])
        model.classifier.kernel.assign(self.teacher.classifier.kernel)
        model.classifier.bias.assign(self.teacher.classifier.bias)
        logging.info(
            "student: the teacher's embeddings, layers 0-%d, pooler and head",
            self.copy_layers - 1,
        )

    def loss(self, model, inputs, labels, *, regression: bool, dropout_seed) -> tf.Tensor:
        teacher_outputs = self.teacher.bert(inputs, training=False)
        teacher_logits = tf.stop_gradient(self.teacher.head(teacher_outputs["pooled_output"]))
        outputs = model.bert(inputs, training=True, dropout_seed=dropout_seed)
        logits = model.head(outputs["pooled_output"], training=True, dropout_seed=dropout_seed)
        alpha, temperature = self.config.alpha, self.config.temperature
        if regression:
            soft = tf.square(logits[:, 0] - teacher_logits[:, 0])
            hard = tf.square(logits[:, 0] - tf.cast(labels, tf.float32))
        else:
            target = tf.nn.softmax(teacher_logits / temperature, axis=-1)
            log_student = tf.nn.log_softmax(logits / temperature, axis=-1)
            # KL(teacher || student), scaled by T^2 so its gradients keep their size as T grows.
            soft = tf.reduce_sum(target * (tf.math.log(target + 1e-12) - log_student), axis=-1) * (
                temperature**2
            )
            hard = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = alpha * soft + (1.0 - alpha) * hard
        if self.config.hidden_weight > 0:
            loss += self.config.hidden_weight * self._hidden_loss(
                outputs["hidden_states"], teacher_outputs["hidden_states"], inputs["input_mask"]
            )
        return loss

    def _hidden_loss(self, student_states, teacher_states, input_mask) -> tf.Tensor:
        """Per-example mean squared error over the mapped layers' real tokens."""
        mask = tf.cast(input_mask, tf.float32)[:, :, tf.newaxis]
        tokens = tf.reduce_sum(mask, axis=[1, 2])
        total = 0.0
        for index, teacher_index in enumerate(self.mapping):
            state = tf.cast(student_states[index], tf.float32)
            if self.projections:
                state = self.projections[index](state)
            target = tf.stop_gradient(tf.cast(teacher_states[teacher_index], tf.float32))
            squared = tf.reduce_mean(tf.square(state - target), axis=-1, keepdims=True)
            total += tf.reduce_sum(squared * mask, axis=[1, 2]) / tf.maximum(tokens, 1.0)
        return total / len(self.mapping)

    def checkpointed(self) -> dict:
        return {"projections": self.projections} if self.projections else {}

    def record(self) -> dict:
        return {
            "distillation": {
                "teacher_dir": self.config.teacher_dir,
                "temperature": self.config.temperature,
                "alpha": self.config.alpha,
                "hidden_weight": self.config.hidden_weight,
                "layer_map": self.mapping,
            }
        }


def student_config(config: DistillConfig, teacher: BertConfig) -> BertConfig:
    """The student's architecture, from the one flag that says it."""
    given = [
        name
        for name in ("student_layers", "student_init_checkpoint", "student_config_file")
        if getattr(config, name)
    ]
    if not given:
        raise ValueError(
            "say what the student is: --student_layers=K, --student_init_checkpoint or "
            "--student_config_file"
        )
    if config.student_layers and len(given) > 1:
        raise ValueError("--student_layers takes the teacher's weights: give no other student")
    if config.student_layers:
        if not 0 < config.student_layers <= teacher.num_hidden_layers:
            raise ValueError(
                f"--student_layers={config.student_layers}: the teacher has "
                f"{teacher.num_hidden_layers} layers"
            )
        return dataclasses.replace(teacher, num_hidden_layers=config.student_layers)
    if config.student_config_file:
        return BertConfig.from_json_file(config.student_config_file)
    return checkpoints.read_config(config.student_init_checkpoint)


def _check_student_vocab(config: DistillConfig, teacher_vocab: str) -> None:
    """A pretrained student must share the teacher's vocab: its ids are the teacher's."""
    if not config.student_init_checkpoint:
        return
    folder = checkpoints.checkpoint_folder(config.student_init_checkpoint)
    beside = storage.join(folder, checkpoints.VOCAB_FILE)
    if storage.exists(beside) and storage.read_bytes(beside) != storage.read_bytes(teacher_vocab):
        raise ValueError(
            f"{beside} differs from the teacher's vocab ({teacher_vocab}): a student must "
            "tokenize as its teacher does"
        )


def distill(config: DistillConfig, *, strategy: tf.distribute.Strategy) -> dict:
    """Trains the student into config.output_dir; returns eval_results.json's record."""
    record = run_classifier.read_classifier_config(config.teacher_dir)
    teacher_flags = run_classifier.ClassifierConfig(**record["flags"])
    teacher_vocab = storage.join(config.teacher_dir, run_classifier.VOCAB_FILE)
    _check_student_vocab(config, teacher_vocab)
    teacher_bert = BertConfig.from_dict(record["bert"])
    student = student_config(config, teacher_bert)
    storage.makedirs(config.output_dir)
    config_file = storage.join(config.output_dir, STUDENT_CONFIG_FILE)
    storage.atomic_write(config_file, student.to_json_string())
    with strategy.scope():
        teacher = run_classifier.load_classifier(config.teacher_dir, record)
    classifier_config = dataclasses.replace(
        teacher_flags,
        data_dir=config.data_dir or teacher_flags.data_dir,
        output_dir=config.output_dir,
        init_checkpoint=config.student_init_checkpoint,
        bert_config_file=config_file,
        vocab_file=teacher_vocab,
        do_train=True,
        do_eval=config.do_eval,
        do_predict=config.do_predict,
        train_batch_size=config.train_batch_size,
        eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        warmup_proportion=config.warmup_proportion,
        mixed_precision=config.mixed_precision,
        strategy=config.strategy,
        tpu=config.tpu,
        seed=config.seed,
        profile_steps="",  # the teacher's profiling window is not the student's
    )
    logging.info(
        "distilling %s (%d layers, hidden %d) into %d layers, hidden %d",
        config.teacher_dir,
        teacher_bert.num_hidden_layers,
        teacher_bert.hidden_size,
        student.num_hidden_layers,
        student.hidden_size,
    )
    objective = Distillation(config, teacher, student_layers=student.num_hidden_layers)
    return run_classifier.run(classifier_config, strategy=strategy, objective=objective)


def define_flags() -> None:
    config_flags.define_flags(DistillConfig)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_flags.config_from_flags(DistillConfig)
    distill(config, strategy=distribution.get_strategy(config.strategy, tpu=config.tpu))


if __name__ == "__main__":
    define_flags()
    command_line.run(main, program="trainer.distill")
