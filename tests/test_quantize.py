"""trainer.quantize: LiteRT models of a fine-tuned classifier, their reports, the layer blame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trainer import quantize, run_classifier


@pytest.fixture(scope="module")
def run_dir(tiny_sst2_run):
    return tiny_sst2_run


def _expected_logits(run_dir):
    record = run_classifier.read_classifier_config(str(run_dir))
    model = run_classifier.load_classifier(str(run_dir), record)
    _, _, dev = run_classifier.load_split(str(run_dir), record, "dev")
    return dev, run_classifier.predict(model, dev, batch_size=8)


def _lite(path):
    return quantize.LiteModel((path / quantize.MODEL_FILE).read_bytes(), num_threads=1)


def test_float32_model_has_the_documented_signature_and_run_classifiers_logits(run_dir, tmp_path):
    report = quantize.quantize(str(run_dir), str(tmp_path / "f32"), mode="float32", latency_runs=5)
    lite = _lite(tmp_path / "f32")
    signature = lite.interpreter.get_signature_list()["serving_default"]
    assert sorted(signature["inputs"]) == sorted(quantize.INPUT_NAMES)
    assert signature["outputs"] == ["logits"]
    for detail in lite.runner.get_input_details().values():
        assert detail["dtype"] == np.int32
        assert list(detail["shape"]) == [1, 16]

    dev, expected = _expected_logits(run_dir)
    np.testing.assert_allclose(lite.logits(dev), expected, atol=1e-4)

    written = json.loads((tmp_path / "f32" / quantize.REPORT_FILE).read_text())
    assert written == json.loads(json.dumps(report))
    assert report["size_bytes"] == report["float32_size_bytes"]
    assert report["quantized_metrics"] == report["float32_metrics"]
    assert report["dev_examples"] == 40
    assert report["metric"] == "accuracy" and report["metric_loss"] == 0
    assert 0 < report["quantized_latency_ms"]["p50"] <= report["quantized_latency_ms"]["p90"]
    assert (tmp_path / "f32" / "metadata.json").exists()


@pytest.mark.parametrize("mode,max_ratio", [("float16", 0.55), ("dynamic_int8", 0.35)])
def test_weight_quantization_shrinks_the_file_and_keeps_the_logits_close(
    run_dir, tmp_path, mode, max_ratio
):
    report = quantize.quantize(str(run_dir), str(tmp_path / mode), mode=mode, latency_runs=5)
    assert report["size_ratio"] <= max_ratio
    assert report["size_bytes"] == (tmp_path / mode / quantize.MODEL_FILE).stat().st_size
    dev, expected = _expected_logits(run_dir)
    logits = _lite(tmp_path / mode).logits(dev)
    assert not np.array_equal(logits, expected)  # it did change the arithmetic
    np.testing.assert_allclose(logits, expected, atol=0.05 if mode == "float16" else 0.3)


def test_int8_calibrates_on_train_examples_and_quantizes_activations(run_dir, tmp_path):
    report = quantize.quantize(
        str(run_dir), str(tmp_path / "int8"), mode="int8", calibration_examples=24, latency_runs=5
    )
    assert report["calibration_examples"] == 24
    lite = _lite(tmp_path / "int8")
    dtypes = [d["dtype"] for d in lite.interpreter.get_tensor_details()]
    assert dtypes.count(np.int8) > dtypes.count(np.float32)  # activations too, not weights only
    dev, expected = _expected_logits(run_dir)
    agree = np.mean(np.argmax(lite.logits(dev), 1) == np.argmax(expected, 1))
    assert agree >= 0.9
    # No activation's int8 step is coarse enough to erase attention scores: with padding masked
    # by adding -10000 one tensor spanned ~10,000 (a step of ~40) and every layer attended
    # uniformly (MiniLM on SST-2 fell to chance).
    steps = [
        float(d["quantization_parameters"]["scales"].max())
        for d in lite.interpreter.get_tensor_details()
        if d["dtype"] == np.int8
        and d["quantization_parameters"]["scales"].size
        and "/attention" in d["name"]
    ]
    assert steps and max(steps) < 1.0


def test_a_loss_above_the_bound_names_the_layers_to_blame(run_dir, tmp_path):
    # Any loss at all is "too much" here, so the blame is computed and written.
    report = quantize.quantize(
        str(run_dir),
        str(tmp_path / "int8"),
        mode="int8",
        calibration_examples=16,
        latency_runs=5,
        max_metric_loss=-1.0,
    )
    parts = [row["layer"] for row in report["layer_errors"]]
    assert parts == ["embeddings", "layer_0", "layer_1", "pooler", "classifier"]
    assert all(row["relative_error"] > 0 for row in report["layer_errors"])
    assert len(report["blame"]) == 3 and set(report["blame"]) <= set(parts)
    assert "--float_layers=" in report["warning"]
    ops = {row["op"]: row for row in report["op_errors"]}
    assert {"FULLY_CONNECTED", "BATCH_MATMUL"} <= set(ops)
    assert all(row["measured"] > 0 for row in ops.values())
    assert report["blame_ops"] == [row["op"] for row in report["op_errors"][:3] if row["added"] > 0]
    assert f"--float_ops={','.join(report['blame_ops'])}" in report["warning"]


def test_float_layers_keep_those_layers_out_of_int8(run_dir, tmp_path):
    report = quantize.quantize(
        str(run_dir),
        str(tmp_path / "mixed"),
        mode="int8",
        calibration_examples=16,
        float_layers=["layer_1", "classifier"],
        latency_runs=5,
        max_metric_loss=-1.0,
    )
    assert report["float_layers"] == ["layer_1", "classifier"]
    errors = {row["layer"]: row for row in report["layer_errors"]}
    # The float layers add (almost) no error of their own; the quantized ones do.
    assert errors["layer_1"]["added"] < errors["layer_0"]["added"]
    details = _lite(tmp_path / "mixed").interpreter.get_tensor_details()
    layer_1 = quantize.part_pattern("layer_1")
    kept = [d["dtype"] for d in details if layer_1.search(d["name"])]
    assert kept
    assert kept.count(np.float32) > kept.count(np.int8)


def test_float_ops_keep_those_op_types_out_of_int8(run_dir, tmp_path):
    report = quantize.quantize(
        str(run_dir),
        str(tmp_path / "ops"),
        mode="int8",
        calibration_examples=16,
        float_ops=["GELU"],
        latency_runs=5,
    )
    assert report["float_ops"] == ["GELU"]
    interpreter = _lite(tmp_path / "ops").interpreter
    tensors = {d["index"]: d["dtype"] for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    gelu = [op for op in ops if op["op_name"] == "GELU"]
    assert len(gelu) == 2  # one a layer
    assert all(tensors[op["outputs"][0]] == np.float32 for op in gelu)
    matmuls = [op for op in ops if op["op_name"] == "FULLY_CONNECTED"]
    assert all(tensors[op["inputs"][0]] == np.int8 for op in matmuls)


def test_refusals(run_dir, tmp_path):
    with pytest.raises(ValueError, match="--mode='int4': one of"):
        quantize.quantize(str(run_dir), str(tmp_path / "a"), mode="int4")
    with pytest.raises(ValueError, match="--float_layers and --float_ops apply to --mode=int8"):
        quantize.quantize(str(run_dir), str(tmp_path / "b"), mode="float16", float_layers=["x"])
    with pytest.raises(ValueError, match="--float_layers=layer_9: no such layer"):
        quantize.quantize(
            str(run_dir),
            str(tmp_path / "c"),
            mode="int8",
            float_layers=["layer_9"],
            calibration_examples=16,
        )
    with pytest.raises(
        ValueError, match="--float_ops: no CONV_2D op in the model; its ops: .*GELU"
    ):
        quantize.quantize(
            str(run_dir),
            str(tmp_path / "g"),
            mode="int8",
            float_ops=["GELU", "CONV_2D"],
            calibration_examples=16,
        )
    with pytest.raises(ValueError, match="--calibration_examples=4: calibrating int8 ranges"):
        quantize.quantize(str(run_dir), str(tmp_path / "e"), mode="int8", calibration_examples=4)
    with pytest.raises(ValueError, match="the train set has only 40 examples"):
        quantize.quantize(str(run_dir), str(tmp_path / "f"), mode="int8", calibration_examples=41)
    with pytest.raises(FileNotFoundError, match="classifier_config.json: not found"):
        quantize.quantize(str(tmp_path), str(tmp_path / "d"), mode="float32")
