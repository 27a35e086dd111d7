r"""Fine-tunes BERT on a GLUE task or your own labelled text, and evaluates it.

  python -m trainer.run_classifier --task_name=SST-2 --data_dir=glue/SST-2 \
      --init_checkpoint=path/to/checkpoint --output_dir=runs/sst2 \
      --do_train --do_eval --do_predict --max_seq_length=128 --train_batch_size=32 \
      --learning_rate=2e-5 --num_train_epochs=3

google-research/bert's run_classifier.py flags. --init_checkpoint takes this trainer's
checkpoints, Google's TF1 ones and Hugging Face folders (config.json + model.safetensors +
vocab.txt); where the checkpoint carries its config and vocab, --bert_config_file and
--vocab_file may be left out. Writes to --output_dir: checkpoints (resumed when present),
TensorBoard events (train/, eval/), eval_results.json (the task's metrics by name), with
--do_predict the test predictions as GLUE submission files (SST-2.tsv, MNLI-m.tsv, ...), and
classifier_config.json (the task, its labels, the model config) for export.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from contracts import batching, command_line, config_flags, storage
from tokenizer.bert_tokenizer import BertTokenizer
from trainer import (
    checkpoints,
    classifier,
    classifier_features,
    distribution,
    glue,
    glue_metrics,
    optimization,
    profiling,
)
from trainer.config import STRATEGIES, BertConfig, parse_profile_steps

CLASSIFIER_CONFIG_FILE = "classifier_config.json"
# The vocab the run tokenized with, copied into --output_dir so the folder is self-contained.
VOCAB_FILE = "vocab.txt"


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """One fine-tuning run; the flags of `python -m trainer.run_classifier` come from it."""

    # CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI, or custom (your own TSV/CSV)
    task_name: str
    data_dir: str  # the task's files: train.tsv, dev.tsv, test.tsv (MNLI: dev_matched.tsv, ...)
    output_dir: str  # checkpoints, events, eval_results.json, predictions
    # this trainer's checkpoint, Google's, or a Hugging Face folder; "": random initialisation
    init_checkpoint: str = ""
    bert_config_file: str = ""  # the model's bert_config.json; "": the checkpoint's own
    vocab_file: str = ""  # WordPiece vocab; "": the vocab.txt beside the checkpoint
    do_lower_case: bool = True  # lower-case and strip accents (uncased vocabs)
    # strip accents apart from case; None: as do_lower_case (Google's rule)
    strip_accents: bool | None = None
    max_seq_length: int = 128  # tokens per example, [CLS] and [SEP]s included
    do_train: bool = False  # fine-tune on train
    do_eval: bool = False  # evaluate on dev (every epoch when training)
    do_predict: bool = False  # write the test predictions as GLUE submission files
    train_batch_size: int = 32  # global batch of one update
    # global batch of evaluation and prediction
    eval_batch_size: int = batching.DEFAULT_CLASSIFIER_EVAL_BATCH_SIZE
    learning_rate: float = 5e-5  # peak learning rate (google-research/bert's default)
    num_train_epochs: float = 3.0  # passes over the train set
    # Save a checkpoint every this many updates, and at the end of each epoch; a rerun resumes
    # from the last one, on the batch where it stopped (google-research/bert's default)
    save_checkpoints_steps: int = 1000
    warmup_proportion: float = 0.1  # share of the updates with a linear warmup
    weight_decay_rate: float = 0.01  # decoupled weight decay, not on LayerNorm and bias
    clip_norm: float = 1.0  # clip the global gradient norm to this; 0 disables
    # "fp32", or "bf16" (TPUs, recent GPUs and CPUs; weights and logits stay float32)
    mixed_precision: str = dataclasses.field(default="fp32", metadata={"enum": ("fp32", "bf16")})
    # "auto", "tpu", "mirrored", "multi_worker" or "one_device"
    strategy: str = dataclasses.field(default="auto", metadata={"enum": STRATEGIES})
    tpu: str = ""  # TPU name, "local" on a TPU VM, or grpc:// address
    seed: int = 12345  # seeds the head's initialisation, the shuffle and dropout
    # Compile the update and the forward pass with XLA; None: on (on CPUs too: it fine-tuned
    # MiniLM 1.2x faster than TensorFlow's own kernels here, benchmarks/RESULTS.md)
    jit_compile: bool | None = None
    # Cut each batch to its longest example, rounded up to max_seq_length / 8 (at least 8
    # tokens), and evaluate in order of length; the logits are the same. None: on, except on
    # TPUs (which need one static shape)
    dynamic_padding: bool | None = None
    # "START,STOP": a TensorFlow profiler trace of those steps into output_dir/train, for
    # TensorBoard's Profile tab (trainer/profiling.py); "": none
    profile_steps: str = ""
    # custom task only: the text column(s), comma-separated (one, or two for pairs)
    text_columns: str = "sentence"
    label_column: str = "label"  # custom task only: the label column
    file_extension: str = ".tsv"  # custom task only: .tsv or .csv
    # custom task only: the test file's column whose values index predictions.tsv; "": the
    # line numbers
    index_column: str = ""

    def __post_init__(self):
        parse_profile_steps(self.profile_steps)


def _task(config: ClassifierConfig, *, labels: Sequence[str] | None = None) -> glue.Task:
    """The config's task; a custom task's labels are read from its train file unless given."""
    if config.task_name.lower() != "custom":
        return glue.task_by_name(config.task_name)
    columns = [c.strip() for c in config.text_columns.split(",") if c.strip()]
    if not 1 <= len(columns) <= 2:
        raise ValueError(f"--text_columns={config.text_columns!r}: name one or two columns")
    if labels is None:
        train = storage.join(config.data_dir, f"train{config.file_extension}")
        labels = glue.labels_of(train, column=config.label_column)
    return glue.custom_task(
        text_a=columns[0],
        text_b=columns[1] if len(columns) > 1 else None,
        label=config.label_column,
        labels=labels,
        extension=config.file_extension,
        index=config.index_column or None,
    )


def task_of(record: dict) -> glue.Task:
    """The task of a run, from its classifier_config.json record."""
    return _task(ClassifierConfig(**record["flags"]), labels=record["labels"])


def _model_config_and_vocab(config: ClassifierConfig) -> tuple[BertConfig, str]:
    """The model config and vocab: the flags', else the checkpoint's own.

    Raises:
      ValueError: neither gives one; the message says which flag to pass.
    """
    folder = checkpoints.checkpoint_folder(config.init_checkpoint) if config.init_checkpoint else ""
    if config.bert_config_file:
        bert = BertConfig.from_json_file(config.bert_config_file)
    elif folder:
        bert = checkpoints.read_config(config.init_checkpoint)
    else:
        raise ValueError("--bert_config_file is required without an --init_checkpoint")
    vocab_file = config.vocab_file
    if not vocab_file and folder:
        beside = storage.join(folder, checkpoints.VOCAB_FILE)
        if storage.exists(beside):
            vocab_file = beside
    if not vocab_file:
        raise ValueError(
            f"--vocab_file is required: no {checkpoints.VOCAB_FILE} beside the checkpoint"
        )
    return bert, vocab_file


def length_bucket(max_seq_length: int) -> int:
    """Dynamic padding cuts a batch to a multiple of this: at most 8 shapes, each compiled once."""
    return max(8, -(-max_seq_length // 8))


def cut_padding(max_seq_length: int):
    """A tf.data map over batched (features, labels) that drops the columns that are padding in
    every example of the batch, keeping a multiple of length_bucket(max_seq_length). A padded
    position takes no part in a real token's output (its attention bias is -10000, whose
    exponential is 0 in float32), so the logits are unchanged up to float rounding."""
    bucket = length_bucket(max_seq_length)

    def cut(inputs, labels):
        mask = inputs["input_mask"]
        longest = tf.reduce_max(tf.reduce_sum(mask, axis=1))
        length = tf.minimum((longest + bucket - 1) // bucket * bucket, tf.shape(mask)[1])
        return {name: value[:, :length] for name, value in inputs.items()}, labels

    return cut


def _dataset(
    features: dict[str, np.ndarray],
    *,
    batch_size: int,
    shuffle_seed: int | None,
    dynamic_padding: bool = False,
    skip_batches: int = 0,
):
    """Batches of (features, labels): in file order, or (shuffle_seed given) shuffled with that
    seed, a new order each epoch, without end, from the batch `skip_batches` on: a resumed run
    goes on with the batches it had not seen, as if it had not stopped."""
    inputs = {name: features[name] for name in classifier_features.FEATURE_NAMES}
    dataset = tf.data.Dataset.from_tensor_slices((inputs, features["label_ids"]))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(features["label_ids"]), seed=shuffle_seed).repeat()
        # Each epoch's order follows from the seed alone, so skipping replays it exactly.
        dataset = dataset.skip(skip_batches * batch_size)
    dataset = dataset.batch(batch_size, drop_remainder=shuffle_seed is not None)
    if dynamic_padding:
        dataset = dataset.map(cut_padding(features["input_mask"].shape[1]))
    return dataset.prefetch(2)


def _loss(logits: tf.Tensor, labels: tf.Tensor, *, regression: bool) -> tf.Tensor:
    """Per-example loss, float32 [batch]: cross-entropy, or squared error for regression."""
    if regression:
        return tf.square(logits[:, 0] - tf.cast(labels, tf.float32))
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def predict(
    model,
    features,
    *,
    batch_size: int,
    dynamic_padding: bool = True,
    jit_compile: bool = False,
    strategy: tf.distribute.Strategy | None = None,
) -> np.ndarray:
    """Logits of every example, float32 [n, num_labels], in order. With dynamic_padding the
    examples are batched in order of length, each batch cut to its longest (same logits, less
    work on short texts); jit_compile runs the forward pass with XLA (one compilation a shape).
    Under a strategy of several replicas, or on TPUs, each batch is split over the replicas
    (`_predict_on_replicas`)."""
    if strategy is not None and (
        strategy.num_replicas_in_sync > 1 or isinstance(strategy, tf.distribute.TPUStrategy)
    ):
        return _predict_on_replicas(
            model, features, batch_size=batch_size, jit_compile=jit_compile, strategy=strategy
        )
    order = None
    if dynamic_padding and len(features["label_ids"]):
        order = np.argsort(features["input_mask"].sum(axis=1), kind="stable")
        features = {name: value[order] for name, value in features.items()}
    dataset = _dataset(
        features, batch_size=batch_size, shuffle_seed=None, dynamic_padding=dynamic_padding
    )
    # One compiled function per model, not one per call: evaluation runs every epoch.
    attribute = "_predict_step_xla" if jit_compile else "_predict_step"
    step = getattr(model, attribute, None)
    if step is None:
        step = tf.function(
            lambda inputs: model(inputs, training=False),
            jit_compile=jit_compile,
            reduce_retracing=True,
        )
        setattr(model, attribute, step)
    logits = np.concatenate([step(inputs).numpy() for inputs, _ in dataset], axis=0)
    if order is None:
        return logits
    restored = np.empty_like(logits)
    restored[order] = logits
    return restored


def _predict_on_replicas(model, features, *, batch_size: int, jit_compile: bool, strategy):
    """predict() split over the replicas: the model's variables live on them (on a TPU, reading
    them from the host for every batch would copy the whole model each time). The examples are
    padded to whole batches of one shape, as TPUs need (the padding rows' logits are dropped);
    each replica takes its contiguous slice of a batch and `gather` puts them back in order."""
    count = len(features["label_ids"])
    padding = -count % batch_size
    inputs = {
        name: np.concatenate(
            [features[name], np.zeros((padding, features[name].shape[1]), np.int32)]
        )
        for name in classifier_features.FEATURE_NAMES
    }
    dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(batch_size, drop_remainder=True)
    step = getattr(model, "_predict_on_replicas_step", None)
    if step is None:
        forward = tf.function(lambda batch: model(batch, training=False), jit_compile=jit_compile)

        def replica_forward(batch):
            # A plain function around the compiled one, as in training: given a jit-compiled
            # tf.function itself, MirroredStrategy ran replica 1's variables on replica 0's
            # device and failed ("Trying to access resource ... replica_1").
            return forward(batch)

        @tf.function
        def step(batch):
            return strategy.gather(strategy.run(replica_forward, args=(batch,)), axis=0)

        model._predict_on_replicas_step = step  # one compiled function per model, as predict()
    batches = strategy.experimental_distribute_dataset(dataset)
    logits = [step(batch).numpy() for batch in batches]
    if not logits:
        return np.zeros((0, model.num_labels), np.float32)
    return np.concatenate(logits, axis=0)[:count]


def _predicted(task: glue.Task, logits: np.ndarray) -> list:
    if task.is_regression:
        return [float(x) for x in logits[:, 0]]
    return [task.labels[i] for i in np.argmax(logits, axis=1)]


def metrics(task: glue.Task, examples, logits: np.ndarray) -> dict[str, float]:
    """The task's official metrics of these logits on these labelled examples."""
    labels = [float(e.label) if task.is_regression else e.label for e in examples]
    return glue_metrics.compute(task.metric, labels, _predicted(task, logits))


def evaluate(task, model, splits, **predict_options) -> dict:
    """{dev file stem: {metric: value, "examples": n}} over the labelled dev splits;
    `predict_options` as predict() takes them."""
    results = {}
    for name, (examples, features) in splits.items():
        logits = predict(model, features, **predict_options)
        results[name] = {**metrics(task, examples, logits), "examples": len(examples)}
    return results


def _train_file(task: glue.Task, config: ClassifierConfig) -> str:
    return f"train{config.file_extension if task.name == 'custom' else '.tsv'}"


class Objective:
    """What fine-tuning minimises: by default the task's loss on the labels. trainer.distill
    passes its own (a teacher's soft targets, hidden-state matching); run() and the train step
    stay the same."""

    def __init__(self):
        self.variables: list = []  # the objective's own trainable variables, made by build()

    def build(self, model) -> None:
        """Makes the objective's own trainable variables (called under the strategy's scope)."""

    def initialize(self, model) -> None:
        """Sets the model's starting weights, after --init_checkpoint, when not resuming."""

    def loss(self, model, inputs, labels, *, regression: bool, dropout_seed) -> tf.Tensor:
        """Per-example loss, float32 [batch], in training mode."""
        logits = model(inputs, training=True, dropout_seed=dropout_seed)
        return _loss(logits, labels, regression=regression)

    def checkpointed(self) -> dict:
        """Objects saved in the checkpoint beside the model (resumed with it)."""
        return {}

    def record(self) -> dict:
        """Added to classifier_config.json."""
        return {}


def read_classifier_config(model_dir: str) -> dict:
    path = storage.join(model_dir, CLASSIFIER_CONFIG_FILE)
    if not storage.exists(path):
        raise FileNotFoundError(
            f"{path}: not found; --model_dir must be a trainer.run_classifier --output_dir"
        )
    return json.loads(storage.read_text(path))


def load_classifier(model_dir: str, record: dict) -> classifier.BertClassifier:
    """The fine-tuned classifier in float32, from the latest checkpoint in `model_dir`."""
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None:
        raise FileNotFoundError(f"{model_dir}: no checkpoint; train it with --do_train first")
    bert = BertConfig.from_dict(record["bert"])
    model = classifier.BertClassifier(bert, num_labels=max(1, len(record["labels"])))
    # The optimizer's slots and the step are in the checkpoint too: not needed here.
    tf.train.Checkpoint(model=model).restore(
        latest
    ).expect_partial().assert_existing_objects_matched()
    logging.info("restored %s", latest)
    return model


def tokenization_of(record: dict) -> dict:
    """The tokenizer settings of a run, from its classifier_config.json record (runs from
    before strip_accents was recorded stripped accents exactly when they lower-cased)."""
    return {
        "do_lower_case": record["do_lower_case"],
        "strip_accents": record.get("strip_accents", record["do_lower_case"]),
    }


def load_split(model_dir: str, record: dict, split: str, *, data_dir: str = ""):
    """A run's task and the examples and features of one of its splits ("train", "dev": the
    first dev file, e.g. MNLI's dev_matched), with the run's tokenizer and max_seq_length, from
    the run's feature cache when it has them. `data_dir` overrides the run's --data_dir."""
    task = task_of(record)
    config = ClassifierConfig(**record["flags"])
    vocab_file = storage.join(model_dir, VOCAB_FILE)
    file_name = _train_file(task, config) if split == "train" else task.dev_files[0]
    examples, features = classifier_features.load_or_encode(
        task,
        storage.join(data_dir or config.data_dir, file_name),
        split=split,
        tokenizer=BertTokenizer(vocab_file, **tokenization_of(record)),
        vocab_file=vocab_file,
        max_seq_length=record["max_seq_length"],
        cache_dir=storage.join(model_dir, "features"),
    )
    return task, examples, features


def create_model(
    config: ClassifierConfig,
    bert: BertConfig,
    *,
    num_labels: int,
    strategy,
    objective: Objective | None = None,
):
    """The classifier (random head, seeded), its optimizer (google-research/bert's AdamW) and
    the update counter, built under `strategy`; the objective's own variables are built there
    too and trained by the same optimizer."""
    with strategy.scope():
        model = classifier.BertClassifier(
            bert,
            num_labels=num_labels,
            seed=config.seed,
            dtype="mixed_bfloat16" if config.mixed_precision == "bf16" else "float32",
        )
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        variables = list(model.trainable_weights)
        if objective is not None:
            objective.build(model)
            variables += objective.variables
        optimizer = optimization.create_optimizer(
            "adamw",
            [v.value if hasattr(v, "value") else v for v in variables],
            weight_decay_rate=config.weight_decay_rate,
            beta_1=0.9,
            beta_2=0.999,
            epsilon=1e-6,
        )
    return model, optimizer, step


def run(
    config: ClassifierConfig,
    *,
    strategy: tf.distribute.Strategy,
    objective: Objective | None = None,
) -> dict:
    """Fine-tunes, evaluates and predicts as the config says; returns eval_results.json's record.
    `objective`: what training minimises (default: the task's loss on the labels)."""
    objective = objective or Objective()
    problem = batching.batch_split_error(
        train_batch_size=config.train_batch_size if config.do_train else None,
        eval_batch_size=config.eval_batch_size,
        do_eval=config.do_eval or config.do_predict,
        replicas=strategy.num_replicas_in_sync,
    )
    if problem:  # said before the features are made and the model is trained
        raise ValueError(problem)
    task = _task(config)
    bert, vocab_file = _model_config_and_vocab(config)
    tokenizer = BertTokenizer(
        vocab_file, do_lower_case=config.do_lower_case, strip_accents=config.strip_accents
    )
    if tokenizer.vocab_size != bert.vocab_size:
        raise ValueError(
            f"{vocab_file} has {tokenizer.vocab_size} tokens, the model's vocab_size is "
            f"{bert.vocab_size}"
        )
    cache_dir = storage.join(config.output_dir, "features")

    def load(file_name: str, split: str, *, path: str = ""):
        return classifier_features.load_or_encode(
            task,
            path or storage.join(config.data_dir, file_name),
            split=split,
            tokenizer=tokenizer,
            vocab_file=vocab_file,
            max_seq_length=config.max_seq_length,
            cache_dir=cache_dir,
        )

    storage.makedirs(config.output_dir)
    # Read whole before the atomic write: safe even when a rerun passes the copy itself.
    storage.atomic_write(
        storage.join(config.output_dir, VOCAB_FILE), storage.read_bytes(vocab_file)
    )
    storage.atomic_write(
        storage.join(config.output_dir, CLASSIFIER_CONFIG_FILE),
        json.dumps(
            {
                "task": task.name,
                "labels": list(task.labels),
                "max_seq_length": config.max_seq_length,
                "do_lower_case": tokenizer.do_lower_case,
                "strip_accents": tokenizer.strip_accents,
                "bert": bert.to_dict(),
                "flags": dataclasses.asdict(config),
                **objective.record(),
            },
            indent=2,
            sort_keys=True,
        )
        + "\n",
    )
    num_labels = 1 if task.is_regression else len(task.labels)
    model, optimizer, step = create_model(
        config, bert, num_labels=num_labels, strategy=strategy, objective=objective
    )
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, step=step, **objective.checkpointed()
    )
    manager = tf.train.CheckpointManager(checkpoint, config.output_dir, max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        logging.info("resumed from %s at step %d", manager.latest_checkpoint, int(step.numpy()))
    else:
        if config.init_checkpoint:
            checkpoints.load_weights(model.bert, config.init_checkpoint)
        objective.initialize(model)
        if not config.do_train:
            logging.warning(
                "%s has no fine-tuned checkpoint and --do_train is off: evaluating and "
                "predicting with a classifier head that was never trained",
                config.output_dir,
            )
    dev = {}
    if config.do_eval:
        dev = {f.rsplit(".", 1)[0]: load(f, "dev") for f in task.dev_files}
    results: dict = {}
    if config.do_train:
        _, train_features = load(_train_file(task, config), "train")
        results = _train(
            config,
            task,
            model,
            optimizer,
            step,
            manager,
            train_features,
            dev,
            strategy=strategy,
            objective=objective,
        )
    if config.do_eval:
        if not results:  # training evaluated the final weights already, after its last epoch
            results = evaluate(task, model, dev, **_predict_options(config, strategy))
        record = {"task": task.name, "split": "dev", "global_step": int(step.numpy())}
        record.update(next(iter(results.values())) if len(results) == 1 else results)
        storage.atomic_write(
            storage.join(config.output_dir, "eval_results.json"),
            json.dumps(record, indent=2, sort_keys=True) + "\n",
        )
        logging.info("eval: %s", json.dumps(record, sort_keys=True))
        results = record
    if config.do_predict:
        for test_file, submission in zip(task.test_files, task.submission_files, strict=True):
            path = glue.locate(config.data_dir, test_file)
            if path is None:
                logging.warning("no %s in %s: no %s", test_file, config.data_dir, submission)
                continue
            examples, features = load(test_file, "test", path=path)
            logits = predict(model, features, **_predict_options(config, strategy))
            glue.write_submission(
                storage.join(config.output_dir, submission),
                [e.guid for e in examples],
                _predicted(task, logits),
            )
            logging.info("wrote %s (%d predictions)", submission, len(examples))
    return results


def make_train_step(
    config: ClassifierConfig,
    model,
    optimizer,
    step: tf.Variable,
    *,
    regression: bool,
    num_train_steps: int,
    num_warmup_steps: int,
    strategy,
    objective: Objective | None = None,
    jit_compile: bool = False,
):
    """The compiled update: `train_step(iterator)` takes the next global batch of a distributed
    dataset of (features, labels), applies one AdamW update (warmup then linear decay, global
    norm clipping) to the model's and the objective's variables and returns the batch's mean
    loss. With jit_compile, the forward and backward pass and the optimizer's arithmetic are
    XLA-compiled (each batch shape once)."""
    objective = objective or Objective()
    variables = list(model.trainable_weights) + list(objective.variables)  # create_model's

    def gradients_of(inputs, labels, current):
        with tf.GradientTape() as tape:
            per_example = objective.loss(
                model, inputs, labels, regression=regression, dropout_seed=tf.stack([current, 1])
            )
            loss = tf.reduce_sum(per_example) / config.train_batch_size
        # Dense gradients (the embedding's arrive as IndexedSlices), for one all-reduce.
        return loss, [tf.convert_to_tensor(g) for g in tape.gradient(loss, variables)]

    def new_values(gradients, current):
        if config.clip_norm > 0:
            gradients, _ = tf.clip_by_global_norm(gradients, config.clip_norm)
        rate = optimization.learning_rate(
            current,
            peak_learning_rate=config.learning_rate,
            num_train_steps=num_train_steps,
            num_warmup_steps=num_warmup_steps,
        )
        return optimizer.new_values(gradients, learning_rate=rate, step=current)

    # Two compiled pieces with the all-reduce and the writes between them, outside XLA: a
    # compiled function may not hold MirroredStrategy's cross-replica merge_call (as in
    # training_loop.Trainer).
    compiled_gradients = tf.function(gradients_of, jit_compile=jit_compile)
    compiled_new_values = tf.function(new_values, jit_compile=jit_compile)

    def replica_step(inputs, labels):
        context = tf.distribute.get_replica_context()
        current = step.read_value()
        loss, gradients = compiled_gradients(inputs, labels, current)
        gradients = context.all_reduce(tf.distribute.ReduceOp.SUM, gradients)
        optimizer.assign(compiled_new_values(gradients, current))
        optimization.replica_update(step, lambda v: v.assign_add(1))
        return loss

    @tf.function
    def train_step(iterator):
        losses = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    return train_step


def resolve_jit_compile(config: ClassifierConfig) -> bool:
    return True if config.jit_compile is None else config.jit_compile


def _predict_options(config: ClassifierConfig, strategy) -> dict:
    return {
        "batch_size": config.eval_batch_size,
        "dynamic_padding": resolve_dynamic_padding(config, strategy),
        "jit_compile": resolve_jit_compile(config),
        "strategy": strategy,
    }


def resolve_dynamic_padding(config: ClassifierConfig, strategy) -> bool:
    if config.dynamic_padding is not None:
        return config.dynamic_padding
    return not isinstance(strategy, tf.distribute.TPUStrategy)


def _train(
    config, task, model, optimizer, step, manager, features, dev, *, strategy, objective
) -> dict:
    examples = len(features["label_ids"])
    steps_per_epoch = max(1, examples // config.train_batch_size)
    num_train_steps = max(1, math.ceil(steps_per_epoch * config.num_train_epochs))
    num_warmup_steps = int(num_train_steps * config.warmup_proportion)
    dataset = strategy.experimental_distribute_dataset(
        _dataset(
            features,
            batch_size=config.train_batch_size,
            shuffle_seed=config.seed,
            dynamic_padding=resolve_dynamic_padding(config, strategy),
            skip_batches=int(step.numpy()),
        )
    )
    train_step = make_train_step(
        config,
        model,
        optimizer,
        step,
        regression=task.is_regression,
        num_train_steps=num_train_steps,
        num_warmup_steps=num_warmup_steps,
        strategy=strategy,
        objective=objective,
        jit_compile=resolve_jit_compile(config),
    )

    logdir = storage.join(config.output_dir, "train")
    writer = tf.summary.create_file_writer(logdir)
    profiler = profiling.StepProfiler(config.profile_steps, logdir=logdir)
    eval_writer = tf.summary.create_file_writer(storage.join(config.output_dir, "eval"))
    iterator = iter(dataset)
    logging.info(
        "fine-tuning %s: %d examples, %d steps (%d a epoch), %d warmup",
        task.name,
        examples,
        num_train_steps,
        steps_per_epoch,
        num_warmup_steps,
    )
    started, first_step, results = time.monotonic(), int(step.numpy()), {}
    log_every = max(1, min(100, steps_per_epoch))
    try:
        while int(step.numpy()) < num_train_steps:
            current = int(step.numpy())
            profiler.before(current)
            with profiling.trace("train_step", step=current):
                loss = float(train_step(iterator))
            current = int(step.numpy())
            profiler.after(current)
            with writer.as_default(step=current):
                tf.summary.scalar("loss", loss)
                # The rate the update just made used (it ran at step current - 1).
                rate_used = optimization.learning_rate(
                    current - 1,
                    peak_learning_rate=config.learning_rate,
                    num_train_steps=num_train_steps,
                    num_warmup_steps=num_warmup_steps,
                )
                tf.summary.scalar("learning_rate", rate_used)
            end_of_epoch = current % steps_per_epoch == 0 or current == num_train_steps
            if current % log_every == 0 or end_of_epoch:
                seconds = time.monotonic() - started
                rate = (current - first_step) / seconds if seconds else 0.0
                logging.info(
                    "step %d/%d (epoch %.2f) loss %.4f, %.1f examples/s, time left %.0f s",
                    current,
                    num_train_steps,
                    current / steps_per_epoch,
                    loss,
                    rate * config.train_batch_size,
                    (num_train_steps - current) / rate if rate else float("nan"),
                )
            every = config.save_checkpoints_steps
            if end_of_epoch or (every > 0 and current % every == 0):
                with profiling.trace("checkpoint_save"):
                    manager.save(checkpoint_number=current)
            if end_of_epoch and dev:
                with profiling.trace("evaluate"):
                    results = evaluate(task, model, dev, **_predict_options(config, strategy))
                with eval_writer.as_default(step=current):
                    for split, metrics in results.items():
                        for name, value in metrics.items():
                            if name != "examples":
                                tf.summary.scalar(f"{split}/{name}", value)
                logging.info("eval at step %d: %s", current, json.dumps(results, sort_keys=True))
    finally:
        profiler.stop()  # a trace still running at the end or on an error
    writer.close()
    eval_writer.close()
    return results


def define_flags() -> None:
    config_flags.define_flags(ClassifierConfig)


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_flags.config_from_flags(ClassifierConfig)
    if not (config.do_train or config.do_eval or config.do_predict):
        raise ValueError("nothing to do: pass --do_train, --do_eval and/or --do_predict")
    strategy = distribution.get_strategy(config.strategy, tpu=config.tpu)
    run(config, strategy=strategy)


if __name__ == "__main__":
    define_flags()
    command_line.run(main, program="trainer.run_classifier")
