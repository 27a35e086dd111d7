"""Training throughput and MFU of trainer.run_pretraining's step vs keras-hub's BertMaskedLM.

    python benchmarks/bench_trainer.py                      # tiny, mini, small at seq 128
    python benchmarks/bench_trainer.py --sizes=tiny,mini,small,base --steps=10

Prints, for each size at the same global batch and sequence length (128, 20 predictions):
  - ours: sequences/s of the full training step (forward, backward, AdamW update; masked LM +
    next sentence), eager TensorFlow kernels and with XLA (--jit_compile);
  - keras-hub's `BertMaskedLM` (same backbone sizes, masked LM only) trained with `Model.fit`,
    its documented way, with its default compile settings;
  - model FLOPs utilisation (MFU) of each: the model's matmul FLOPs per second (forward +
    backward = 3x forward, as trainer.training_loop.model_flops_per_sequence counts them) over
    the float32 matmul peak measured on this machine at the start of the run;
  - the input pipeline alone (tf.data parsing BERT records of the same shape) in sequences/s,
    and how many times faster it is than our step consumes them.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from contracts import schema  # noqa: E402
from trainer import config as config_lib  # noqa: E402
from trainer import input_pipeline, training_loop  # noqa: E402

SEQ, PREDS = 128, 20


def matmul_peak(*, size: int = 2048, seconds: float = 3.0) -> float:
    """Measured float32 matmul FLOP/s (best of several timed bursts)."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))

    @tf.function
    def burst(a, b):
        c = a
        for _ in range(8):
            c = tf.matmul(c, b) * 1e-3  # rescale: stay finite
        return tf.reduce_sum(c)

    burst(a, b).numpy()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        burst(a, b).numpy()
        best = max(best, 8 * 2 * size**3 / (time.perf_counter() - start))
    return best


def synthetic_batch(batch: int, vocab: int, *, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of full-length BERT features (no padding, 20 masked positions)."""
    rng = np.random.default_rng(seed)
    return {
        "input_ids": rng.integers(5, vocab, (batch, SEQ)).astype(np.int32),
        "input_mask": np.ones((batch, SEQ), np.int32),
        "segment_ids": (np.arange(SEQ) >= SEQ // 2).astype(np.int32)[None].repeat(batch, 0),
        "masked_lm_positions": np.sort(
            rng.permuted(np.tile(np.arange(1, SEQ - 1), (batch, 1)), axis=1)[:, :PREDS], axis=1
        ).astype(np.int32),
        "masked_lm_ids": rng.integers(5, vocab, (batch, PREDS)).astype(np.int32),
        "masked_lm_weights": np.ones((batch, PREDS), np.float32),
        "next_sentence_labels": rng.integers(0, 2, (batch, 1)).astype(np.int32),
    }


def ours(bert: config_lib.BertConfig, batch: dict, *, steps: int, jit: bool) -> float:
    """Sequences/s of our compiled training loop (steps per call = steps)."""
    size = len(batch["input_ids"])
    with tempfile.TemporaryDirectory() as output_dir:
        config = config_lib.PretrainingConfig(
            input_file="unused",
            output_dir=output_dir,
            bert=bert,
            max_seq_length=SEQ,
            max_predictions_per_seq=PREDS,
            train_batch_size=size,
            num_train_steps=1000,
            num_warmup_steps=10,
            jit_compile=jit,
        )
        strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
        trainer = training_loop.Trainer(config, strategy=strategy)
        dataset = tf.data.Dataset.from_tensors(batch).repeat()
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        loop = trainer.train_loop_function()
        loop(iterator, tf.constant(2)).numpy()  # trace, compile, warm up
        start = time.perf_counter()
        loop(iterator, tf.constant(steps)).numpy()
        return steps * size / (time.perf_counter() - start)


def keras_hub_masked_lm(bert: config_lib.BertConfig, batch: dict, *, steps: int) -> float:
    """Sequences/s of keras-hub's BertMaskedLM under Model.fit (its default compile)."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=bert.vocab_size,
        num_layers=bert.num_hidden_layers,
        num_heads=bert.num_attention_heads,
        hidden_dim=bert.hidden_size,
        intermediate_dim=bert.intermediate_size,
        dropout=bert.hidden_dropout_prob,
        max_sequence_length=bert.max_position_embeddings,
    )
    model = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4, weight_decay=0.01, epsilon=1e-6, clipnorm=1.0),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    inputs = {
        "token_ids": batch["input_ids"],
        "padding_mask": batch["input_mask"].astype(bool),
        "segment_ids": batch["segment_ids"],
        "mask_positions": batch["masked_lm_positions"],
    }
    data = tf.data.Dataset.from_tensors(
        (inputs, batch["masked_lm_ids"], batch["masked_lm_weights"])
    ).repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # trace, compile, warm up
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * len(batch["input_ids"]) / (time.perf_counter() - start)


def input_pipeline_rate(batch: dict, *, batch_size: int, batches: int = 200) -> float:
    """Sequences/s of trainer.input_pipeline reading and parsing records of this shape."""
    with tempfile.TemporaryDirectory() as folder:
        files = []
        for shard in range(4):
            path = os.path.join(folder, f"train-{shard:05d}-of-00004.tfrecord")
            with tf.io.TFRecordWriter(path) as writer:
                for row in range(len(batch["input_ids"])):
                    writer.write(schema.serialize({k: v[row] for k, v in batch.items()}))
            files.append(path)
        dataset = input_pipeline.make_dataset(
            files,
            batch_size=batch_size,
            max_seq_length=SEQ,
            max_predictions_per_seq=PREDS,
            is_training=True,
            shuffle_buffer_size=1000,
        )
        iterator = iter(dataset)
        for _ in range(20):
            next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,mini,small", help="comma-separated sizes")
    parser.add_argument("--batch_size", type=int, default=32, help="global batch")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--no_keras_hub", action="store_true", help="skip the reference")
    args = parser.parse_args()

    peak = matmul_peak()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads; "
        f"TensorFlow {tf.__version__}, Keras {keras.__version__}"
    )
    print(f"measured float32 matmul peak: {peak / 1e9:.1f} GFLOP/s (2048x2048)")
    print(f"seq {SEQ}, {PREDS} predictions, global batch {args.batch_size}, {args.steps} steps")
    header = (
        f"{'model':<7}{'ours seq/s':>11}{'MFU':>7}{'ours XLA':>10}{'MFU':>7}"
        f"{'keras-hub':>11}{'MFU':>7}{'best vs hub':>13}"
    )
    print(header)
    best_rate = 0.0
    for size in args.sizes.split(","):
        bert = config_lib.model_config(size)
        batch = synthetic_batch(args.batch_size, bert.vocab_size)
        flops = training_loop.model_flops_per_sequence(bert, seq_length=SEQ, predictions=PREDS)
        rates = {
            "eager": ours(bert, batch, steps=args.steps, jit=False),
            "xla": ours(bert, batch, steps=args.steps, jit=True),
        }
        hub = None if args.no_keras_hub else keras_hub_masked_lm(bert, batch, steps=args.steps)
        best = max(rates.values())
        best_rate = max(best_rate, best) if size == args.sizes.split(",")[0] else best_rate
        line = f"{size:<7}"
        for rate in rates.values():
            line += f"{rate:>11.1f}{flops * rate / peak:>7.1%}"
        if hub:
            line += f"{hub:>11.1f}{flops * hub / peak:>7.1%}{best / hub:>12.2f}x"
        print(line, flush=True)
        keras.backend.clear_session()
    first = config_lib.model_config(args.sizes.split(",")[0])
    pipeline_rate = input_pipeline_rate(
        synthetic_batch(1024, first.vocab_size), batch_size=args.batch_size
    )
    print(
        f"input pipeline alone: {pipeline_rate:.0f} seq/s = {pipeline_rate / best_rate:.1f}x what "
        f"the fastest step above ({args.sizes.split(',')[0]}) consumes"
    )


if __name__ == "__main__":
    main()
