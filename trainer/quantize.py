r"""Converts a fine-tuned classifier to LiteRT, quantized, and measures what that costs.

  python -m trainer.quantize --model_dir=runs/sst2 --output=runs/sst2/int8 --mode=dynamic_int8

--model_dir is a `trainer.run_classifier` --output_dir (or a `trainer.distill` one). Modes:

  float32        no quantization: the reference
  float16        weights stored as float16, computed in float32
  dynamic_int8   int8 weights, float activations (quantized on the fly inside each matmul)
  int8           int8 weights and activations, the activation ranges calibrated on
                 --calibration_examples drawn at random from the task's train set

Writes OUT/model.tflite (signature `serving_default`: inputs `input_word_ids`, `input_mask`,
`input_type_ids`, int32 [1, max_seq_length], as run_classifier's features; output `logits`,
float32 [1, labels]) and OUT/quantization_report.json: the mode, both files' sizes, the dev-set
metrics of the quantized and of the float32 model (both run through LiteRT, one example at a
time), batch-1 latency p50/p90 of both, and, where the quantized model loses more than
--max_metric_loss (a point by default) of the task's main metric, the layers to blame: each
layer's output error against float32, and the layers where it grows most, to keep in float
(`--float_layers`, int8 mode); in int8 mode also the error each op type adds (`op_errors`) and
the types that add most, to keep in float wherever they are (`--float_ops`): in BERT the
layer norms' centring and scaling (SUB, MUL), whose error spreads over every layer.

In int8 mode the graph masks attention padding within the scores' range rather than by adding
-10000 (`modeling.quantizable_masks`): one int8 scale cannot hold both.

The converter is TensorFlow's (tf.lite.TFLiteConverter); the interpreter is LiteRT's
(ai-edge-litert): TensorFlow's own tf.lite.Interpreter is deprecated in its favour.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import warnings
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from absl import flags, logging

from contracts import command_line, metadata, storage
from trainer import modeling, run_classifier

FLAGS = flags.FLAGS

MODES = ("float32", "float16", "dynamic_int8", "int8")
INPUT_NAMES = ("input_word_ids", "input_mask", "input_type_ids")
MODEL_FILE = "model.tflite"
REPORT_FILE = "quantization_report.json"
MIN_CALIBRATION_EXAMPLES = 16
# run_classifier's feature names, in INPUT_NAMES' order.
FEATURES = ("input_ids", "input_mask", "segment_ids")
# The parts of the model a layer report groups tensors by. TFLite tensor names keep the Keras
# layer path, one component per layer, each maybe with Keras's uniquifying suffix ("_1"), and
# fused ops join their names with ";": bert_classifier/bert/encoder/layer_3_1/attention/...
_PARTS = r"embeddings|layer_\d+|pooler|classifier"


def part_pattern(parts: str = _PARTS) -> re.Pattern:
    """Matches a tensor name inside one of `parts` (a regex alternation); group 1 is the part."""
    return re.compile(rf"(?:^|[/;])({parts})(?:_\d+)?/")


_PART = part_pattern()


def _interpreter(content: bytes, *, num_threads: int, preserve_all_tensors: bool = False):
    # Imported here: only quantize needs LiteRT, and the trainer machines need not have it.
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as error:
        raise ImportError(
            "trainer.quantize runs models with LiteRT: pip install ai-edge-litert"
        ) from error
    # XNNPACK (the default delegate) runs the graph as one node and keeps no intermediate
    # tensors: the layer report reads them with the reference kernels.
    resolver = (
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if preserve_all_tensors
        else OpResolverType.AUTO
    )
    with warnings.catch_warnings():
        # preserve_all_tensors warns that it is for debugging: the layer report is just that.
        warnings.simplefilter("ignore", UserWarning)
        return Interpreter(
            model_content=content,
            num_threads=num_threads,
            experimental_preserve_all_tensors=preserve_all_tensors,
            experimental_op_resolver_type=resolver,
        )


def logits_function(model, *, max_seq_length: int, batch_size: int = 1):
    """The concrete function that is converted: the three int32 inputs -> {"logits"}."""

    @tf.function(
        input_signature=[
            tf.TensorSpec([batch_size, max_seq_length], tf.int32, name=name) for name in INPUT_NAMES
        ],
        autograph=False,
    )
    def serve(input_word_ids, input_mask, input_type_ids):
        logits = model(
            {"input_ids": input_word_ids, "input_mask": input_mask, "segment_ids": input_type_ids},
            training=False,
        )
        return {"logits": logits}

    return serve.get_concrete_function()


def batch_one_rows(features: dict[str, np.ndarray], indices) -> list[list[np.ndarray]]:
    """The examples at `indices` as LiteRT inputs: per example, its FEATURES as int32 [1, seq]."""
    return [[features[name][i : i + 1].astype(np.int32) for name in FEATURES] for i in indices]


def convert(
    model,
    *,
    max_seq_length: int,
    mode: str,
    calibration: dict[str, np.ndarray] | None = None,
    float_layers: Sequence[str] = (),
    float_ops: Sequence[str] = (),
    batch_size: int = 1,
) -> bytes:
    """The model as a LiteRT flatbuffer, quantized as `mode` says.

    Args:
      calibration: int8 only: the features whose activation ranges calibrate the model.
      float_layers: int8 only: parts of the model ("embeddings", "layer_3", "pooler",
        "classifier") whose ops stay in float.
      float_ops: int8 only: LiteRT op types ("MUL", "SUB", "NEG", "GELU", ...) that stay in
        float wherever they are.
    """
    if mode not in MODES:
        raise ValueError(f"--mode={mode!r}: one of {', '.join(MODES)}")
    if (float_layers or float_ops) and mode != "int8":
        raise ValueError("--float_layers and --float_ops apply to --mode=int8 only")
    # int8 activations: the graph masks attention within the scores' range
    # (modeling.quantizable_masks).
    converter = _converter(
        model, max_seq_length=max_seq_length, batch_size=batch_size, for_int8=mode == "int8"
    )
    if mode != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if mode == "int8":
        if calibration is None or not len(calibration["input_ids"]):
            raise ValueError("--mode=int8 needs calibration examples")
        count = len(calibration["input_ids"])

        def representative():
            for start in range(0, count - batch_size + 1, batch_size):
                yield [
                    calibration[name][start : start + batch_size].astype(np.int32)
                    for name in FEATURES
                ]

        converter.representative_dataset = representative
        if float_layers or float_ops:
            float_content = _converter(
                model, max_seq_length=max_seq_length, batch_size=batch_size, for_int8=True
            ).convert()
            return _convert_with_float_parts(
                converter, representative, float_layers, float_ops, float_content
            )
    return converter.convert()


def _converter(model, *, max_seq_length: int, batch_size: int, for_int8: bool):
    """A TFLiteConverter of the model's logits function, as traced for `convert`."""
    masks = modeling.quantizable_masks(model) if for_int8 else contextlib.nullcontext()
    with masks:
        function = logits_function(model, max_seq_length=max_seq_length, batch_size=batch_size)
    # The converter freezes the variables it finds through the trackable object. Given the Keras
    # 3 model it finds none and leaves READ_VARIABLE ops reading uninitialised variables (NaN
    # logits in LiteRT); a tf.Module holding the underlying tf.Variables is found.
    holder = tf.Module()
    holder.model_variables = [v.value if hasattr(v, "value") else v for v in model.weights]
    return tf.lite.TFLiteConverter.from_concrete_functions([function], holder)


def _convert_with_float_parts(
    converter, representative, float_layers, float_ops, float_content
) -> bytes:
    """int8 with the ops of `float_layers` and those of the types `float_ops` left in float:
    TFLite's selective quantization (the quantization debugger's deny lists, as TensorFlow's
    guide to it does). The node deny list names ops by their output tensors: those of the
    float model whose names are in those layers."""
    interpreter = _interpreter(float_content, num_threads=1)
    names = []
    if float_layers:
        pattern = part_pattern("|".join(re.escape(layer) for layer in float_layers))
        names = [d["name"] for d in interpreter.get_tensor_details() if pattern.search(d["name"])]
        if not names:
            raise ValueError(f"--float_layers={','.join(float_layers)}: no such layer in the model")
    present = {op["op_name"] for op in interpreter._get_ops_details()}
    unknown = sorted(set(float_ops) - present)
    if unknown:
        raise ValueError(
            f"--float_ops: no {', '.join(unknown)} op in the model; its ops: "
            f"{', '.join(sorted(present))}"
        )
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=representative,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=names or None, denylisted_ops=list(float_ops) or None
        ),
    )
    return debugger.get_nondebug_quantized_model()


class LiteModel:
    """A converted model in LiteRT's interpreter: logits of examples, one at a time."""

    def __init__(self, content: bytes, *, num_threads: int, preserve_all_tensors: bool = False):
        self.interpreter = _interpreter(
            content, num_threads=num_threads, preserve_all_tensors=preserve_all_tensors
        )
        self.runner = self.interpreter.get_signature_runner("serving_default")

    def __call__(self, row: Sequence[np.ndarray]) -> np.ndarray:
        return self.runner(**dict(zip(INPUT_NAMES, row, strict=True)))["logits"]

    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        rows = batch_one_rows(features, range(len(features["input_ids"])))
        return np.concatenate([self(row) for row in rows], axis=0)

    def latency_ms(self, features: dict[str, np.ndarray], *, runs: int) -> dict[str, float]:
        """Batch-1 latency over `runs` calls on distinct examples, after a warm-up."""
        rows = batch_one_rows(features, np.arange(runs + 5) % len(features["input_ids"]))
        for row in rows[:5]:
            self(row)
        times = []
        for row in rows[5:]:
            started = time.perf_counter()
            self(row)
            times.append((time.perf_counter() - started) * 1e3)
        return {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90))}


def main_metric(metric: str) -> str:
    """The metric a quantized model is judged by (the first the task reports)."""
    return {
        "accuracy": "accuracy",
        "f1_accuracy": "accuracy",
        "matthews": "matthews_corrcoef",
        "pearson_spearman": "pearson",
    }[metric]


def _float_outputs(lite: LiteModel) -> dict[str, np.ndarray]:
    """The float (or dequantized int8) output of every op of the last call, by tensor name, in
    the order the ops ran."""
    interpreter = lite.interpreter
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():  # LiteRT's only listing of ops in run order
        for index in op["outputs"]:
            detail = details.get(index)
            if detail is None:
                continue
            value = interpreter.get_tensor(index)
            if value.dtype == np.float32:
                found[detail["name"]] = value
            elif value.dtype == np.int8 and detail["quantization"][0]:
                scale, zero_point = detail["quantization"]
                found[detail["name"]] = (value.astype(np.float32) - zero_point) * scale
    return found


def _relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """RMS of the difference over RMS of the float value (1 where that is 0)."""
    scale = float(np.sqrt(np.mean(np.square(expected)))) or 1.0
    return float(np.sqrt(np.mean(np.square(actual - expected)))) / scale


def layer_errors(
    float_content: bytes, quantized_content: bytes, features, *, examples: int
) -> list[dict]:
    """Each part of the model (embeddings, layer_N, pooler, classifier), in order: the relative
    error (RMS of the difference over RMS of the float value) of its outputs, quantized against
    float32, averaged over `examples` dev examples, and how much it added to the error of the
    part before it. Tensors are matched by name and shape."""
    reference = LiteModel(float_content, num_threads=1, preserve_all_tensors=True)
    quantized = LiteModel(quantized_content, num_threads=1, preserve_all_tensors=True)
    sums: dict[str, list[float]] = {}
    order: list[str] = []
    for row in batch_one_rows(features, range(min(examples, len(features["input_ids"])))):
        reference(row)
        quantized(row)
        expected, actual = _float_outputs(reference), _float_outputs(quantized)
        last_of_part: dict[str, str] = {}
        for name in expected:  # in run order: the last tensor of a part is its output
            part = _PART.search(name)
            if part and name in actual and actual[name].shape == expected[name].shape:
                last_of_part[part.group(1)] = name
        # The classifier's output is the model's, named after the signature, not the layer.
        last_of_part["classifier"] = reference.interpreter.get_output_details()[0]["name"]
        for part, name in last_of_part.items():
            if part not in order:
                order.append(part)
            sums.setdefault(part, []).append(_relative_error(actual[name], expected[name]))
    rows, previous = [], 0.0
    for part in sorted(order, key=_part_order):
        error = float(np.mean(sums[part]))
        rows.append({"layer": part, "relative_error": error, "added": error - previous})
        previous = error
    return rows


def op_type_errors(
    float_content: bytes, quantized_content: bytes, features, *, examples: int
) -> list[dict]:
    """The error each op type adds, largest first: for every op of the quantized model whose
    output matches a float tensor (by name and shape), the relative error of that output
    (as in `layer_errors`) less the largest of its inputs' (matched, or carried through the
    QUANTIZE ops the converter inserts; weights count as exact), averaged over its ops and
    `examples` dev examples. A type whose ops add much error is one to keep in float
    (`--float_ops`). `float_content` must be the graph that was quantized, in float."""
    reference = LiteModel(float_content, num_threads=1, preserve_all_tensors=True)
    quantized = LiteModel(quantized_content, num_threads=1, preserve_all_tensors=True)
    details = {d["index"]: d for d in quantized.interpreter.get_tensor_details()}
    ops = quantized.interpreter._get_ops_details()
    added: dict[str, list[float]] = {}
    for row in batch_one_rows(features, range(min(examples, len(features["input_ids"])))):
        reference(row)
        quantized(row)
        expected, actual = _float_outputs(reference), _float_outputs(quantized)
        errors: dict[int, float] = {}
        for op in ops:
            inputs = [errors.get(int(i), 0.0) for i in op["inputs"] if i >= 0]
            before = max(inputs, default=0.0)
            for index in op["outputs"]:
                name = details[index]["name"] if index in details else None
                if (
                    name in expected
                    and name in actual
                    and (actual[name].shape == expected[name].shape)
                ):
                    errors[int(index)] = _relative_error(actual[name], expected[name])
                    if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE"):
                        added.setdefault(op["op_name"], []).append(errors[int(index)] - before)
                else:
                    errors[int(index)] = before
    rows = [
        {"op": name, "added": float(np.mean(values)), "measured": len(values)}
        for name, values in added.items()
    ]
    return sorted(rows, key=lambda row: row["added"], reverse=True)


def _part_order(part: str) -> tuple[int, int]:
    if part == "embeddings":
        return (0, 0)
    if part.startswith("layer_"):
        return (1, int(part.split("_")[1]))
    return (2, 0 if part == "pooler" else 1)


def quantize(
    model_dir: str,
    output: str,
    *,
    mode: str,
    calibration_examples: int = 1000,
    seed: int = 12345,
    data_dir: str = "",
    float_layers: Sequence[str] = (),
    float_ops: Sequence[str] = (),
    latency_runs: int = 200,
    num_threads: int = 0,
    max_metric_loss: float = 0.01,
    blame_examples: int = 32,
) -> dict:
    """Writes OUT/model.tflite and OUT/quantization_report.json; returns the report."""
    if mode not in MODES:
        raise ValueError(f"--mode={mode!r}: one of {', '.join(MODES)}")
    if (float_layers or float_ops) and mode != "int8":
        raise ValueError("--float_layers and --float_ops apply to --mode=int8 only")
    if storage.exists(storage.join(output, MODEL_FILE)):
        raise FileExistsError(f"{storage.join(output, MODEL_FILE)} exists: give a new folder")
    record = run_classifier.read_classifier_config(model_dir)
    model = run_classifier.load_classifier(model_dir, record)
    max_seq_length = record["max_seq_length"]
    task, examples, dev = run_classifier.load_split(model_dir, record, "dev", data_dir=data_dir)
    calibration = None
    if mode == "int8":
        _, _, train = run_classifier.load_split(model_dir, record, "train", data_dir=data_dir)
        count = calibration_examples
        if count < MIN_CALIBRATION_EXAMPLES:
            raise ValueError(
                f"--calibration_examples={count}: calibrating int8 ranges on fewer than "
                f"{MIN_CALIBRATION_EXAMPLES} examples gives ranges no dev set would fit"
            )
        if count > len(train["input_ids"]):
            raise ValueError(
                f"--calibration_examples={count}: the train set has only "
                f"{len(train['input_ids'])} examples; pass at most that many"
            )
        chosen = np.sort(np.random.default_rng(seed).choice(len(train["input_ids"]), count, False))
        calibration = {name: train[name][chosen] for name in FEATURES}
        logging.info("calibrating on %d train examples", count)
    threads = num_threads or os.cpu_count() or 1
    logging.info("converting to %s", mode)
    content = convert(
        model,
        max_seq_length=max_seq_length,
        mode=mode,
        calibration=calibration,
        float_layers=float_layers,
        float_ops=float_ops,
    )
    float_content = (
        content
        if mode == "float32"
        else convert(model, max_seq_length=max_seq_length, mode="float32")
    )
    report: dict = {
        "mode": mode,
        "task": task.name,
        "max_seq_length": max_seq_length,
        "num_threads": threads,
        "size_bytes": len(content),
        "float32_size_bytes": len(float_content),
        "size_ratio": len(content) / len(float_content),
        "dev_examples": len(examples),
    }
    if mode == "int8":
        report["calibration_examples"] = len(calibration["input_ids"])
        report["float_layers"] = list(float_layers)
        report["float_ops"] = list(float_ops)
    for name, payload in (("quantized", content), ("float32", float_content)):
        lite = LiteModel(payload, num_threads=threads)
        logging.info("%s: dev set through LiteRT (%d examples)", name, len(examples))
        report[f"{name}_metrics"] = run_classifier.metrics(task, examples, lite.logits(dev))
        report[f"{name}_latency_ms"] = lite.latency_ms(dev, runs=latency_runs)
    key = main_metric(task.metric)
    loss = report["float32_metrics"][key] - report["quantized_metrics"][key]
    report["metric"] = key
    report["metric_loss"] = loss
    report["speedup_p50"] = (
        report["float32_latency_ms"]["p50"] / report["quantized_latency_ms"]["p50"]
    )
    if loss > max_metric_loss:
        errors = layer_errors(float_content, content, dev, examples=blame_examples)
        worst = sorted(errors, key=lambda row: row["added"], reverse=True)[:3]
        report["layer_errors"] = errors
        report["blame"] = [row["layer"] for row in worst]
        advice = (
            f"--mode=int8 --float_layers={','.join(report['blame'])}"
            if mode == "int8"
            else "a milder mode (float16), or --mode=int8 with --float_layers"
        )
        report["warning"] = (
            f"{mode} loses {loss * 100:.2f} points of dev {key} (more than "
            f"{max_metric_loss * 100:.2f}); the error grows most in {', '.join(report['blame'])}: "
            f"keep them in float ({advice})"
        )
        if mode == "int8":
            # Error that spreads over every layer comes from op types, not layers (BERT's
            # layer norms): measured against the same graph in float.
            same_graph = _converter(
                model, max_seq_length=max_seq_length, batch_size=1, for_int8=True
            ).convert()
            op_errors = op_type_errors(same_graph, content, dev, examples=blame_examples)
            report["op_errors"] = op_errors
            report["blame_ops"] = [row["op"] for row in op_errors[:3] if row["added"] > 0]
            if report["blame_ops"]:
                report["warning"] += (
                    f"; of the op types, {', '.join(report['blame_ops'])} add the most "
                    f"(--float_ops={','.join(report['blame_ops'])})"
                )
        logging.warning("%s", report["warning"])
    storage.makedirs(output)
    storage.atomic_write(storage.join(output, MODEL_FILE), content)
    storage.atomic_write(
        storage.join(output, REPORT_FILE), json.dumps(report, indent=2, sort_keys=True) + "\n"
    )
    metadata.write(
        output,
        command="trainer.quantize",
        flags={"model_dir": model_dir, "output": output, "mode": mode},
        inputs=[storage.join(model_dir, run_classifier.CLASSIFIER_CONFIG_FILE)],
        outputs=[storage.join(output, MODEL_FILE), storage.join(output, REPORT_FILE)],
        counts={"size_bytes": len(content), "dev_examples": len(examples)},
        extra={"task": task.name, "labels": record["labels"], "inputs": list(INPUT_NAMES)},
    )
    logging.info(
        "wrote %s: %s, %.1f MB (%.0f%% of float32), dev %s %.4f (float32 %.4f), p50 %.2f ms "
        "(float32 %.2f ms)",
        output,
        mode,
        len(content) / 1e6,
        report["size_ratio"] * 100,
        key,
        report["quantized_metrics"][key],
        report["float32_metrics"][key],
        report["quantized_latency_ms"]["p50"],
        report["float32_latency_ms"]["p50"],
    )
    return report


def define_flags() -> None:
    flags.DEFINE_string("model_dir", None, "A trainer.run_classifier (or distill) --output_dir.")
    flags.DEFINE_string("output", None, "The folder to write model.tflite and the report into.")
    flags.DEFINE_enum("mode", "dynamic_int8", MODES, "The precision of the converted model.")
    flags.DEFINE_integer(
        "calibration_examples", 1000, "int8: train examples, drawn at random, to calibrate on."
    )
    flags.DEFINE_integer("seed", 12345, "Seeds the draw of the calibration examples.")
    flags.DEFINE_string("data_dir", "", "The task's files; default: the run's --data_dir.")
    flags.DEFINE_list(
        "float_layers", [], "int8: parts kept in float (embeddings, layer_N, pooler, classifier)."
    )
    flags.DEFINE_list(
        "float_ops",
        [],
        "int8: LiteRT op types kept in float wherever they are (e.g. MUL,SUB,NEG: the layer "
        "norms' centring and scaling; the report's blame_ops names the types to try).",
    )
    flags.DEFINE_integer("latency_runs", 200, "Batch-1 calls timed for the latency figures.")
    flags.DEFINE_integer("num_threads", 0, "LiteRT interpreter threads; 0: one per CPU core.")
    flags.DEFINE_float(
        "max_metric_loss", 0.01, "Loss of the main dev metric above which layers are blamed."
    )
    flags.mark_flags_as_required(["model_dir", "output"])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
    quantize(
        FLAGS.model_dir,
        FLAGS.output,
        mode=FLAGS.mode,
        calibration_examples=FLAGS.calibration_examples,
        seed=FLAGS.seed,
        data_dir=FLAGS.data_dir,
        float_layers=FLAGS.float_layers,
        float_ops=FLAGS.float_ops,
        latency_runs=FLAGS.latency_runs,
        num_threads=FLAGS.num_threads,
        max_metric_loss=FLAGS.max_metric_loss,
    )


if __name__ == "__main__":
    define_flags()
    command_line.run(main, program="trainer.quantize")
