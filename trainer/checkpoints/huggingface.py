"""Hugging Face checkpoints: a folder with config.json and model.safetensors (transformers'
`BertForPreTraining`, `BertForMaskedLM`, `BertForNextSentencePrediction` or `BertModel`).

safetensors is imported where a file is read or written, so that the other formats (and the
trainer on a TPU VM) do not need it; without it, a one-line error says what to install."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from contracts import storage
from trainer.checkpoints.layout import (
    HUGGINGFACE_CONFIG_FILE,
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX_FILE,
    BertConfig,
    Weights,
    check_weights,
    google_variable_shapes,
    huggingface_name,
    read_json,
    transposed_in_huggingface,
)

# Buffers Hugging Face saves that are not weights: `position_ids` ([1, P] = arange) and
# `token_type_ids` (zeros) of BertEmbeddings.
_HUGGINGFACE_BUFFERS = re.compile(r"(^|\.)embeddings\.(position_ids|token_type_ids)$")
# Safetensors dtype codes of floating-point tensors; all are read as float32.
_SAFETENSORS_FLOATS = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    # numpy has no bfloat16; TensorFlow's numpy type (from ml_dtypes) reads it.
    "BF16": tf.bfloat16.as_numpy_dtype,
}
_SAFETENSORS_INTEGERS = {"I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8}


def _safetensors():
    """The safetensors package, imported only where Hugging Face files are read or written.

    Raises:
      ModuleNotFoundError: it is not installed; the message says what to install.
    """
    try:
        import safetensors
        import safetensors.numpy
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "Hugging Face checkpoints (model.safetensors) need the safetensors package: "
            "pip install safetensors"
        ) from error
    return safetensors


def huggingface_config(path: str) -> BertConfig:
    values = read_json(path)
    model_type = values.get("model_type", "bert")
    if model_type != "bert":
        # RoBERTa, DistilBERT, ALBERT, ... differ in more than names (position offsets, no
        # token types, shared layers): refuse rather than convert into something else.
        raise ValueError(f"{path}: model_type {model_type!r} is not a BERT")
    position_type = values.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"{path}: position_embedding_type {position_type!r}; only 'absolute' (BERT's "
            "learned positions) is supported"
        )
    if "hidden_size" not in values:
        raise ValueError(f"{path}: not a BERT config (no 'hidden_size' key)")
    try:
        return BertConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from error


# ---- huggingface -------------------------------------------------------------------------


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """{name: array} of a .safetensors file (local or gs://); floats as float32."""
    with storage.open_file(path, "rb") as f:
        data = f.read()
    deserialize = _safetensors().deserialize
    try:
        entries = deserialize(data)
    except Exception as error:  # safetensors raises its own SafetensorError (and others)
        raise ValueError(f"{path}: not a safetensors file ({error})") from error
    tensors = {}
    for name, entry in entries:
        dtype = _SAFETENSORS_FLOATS.get(entry["dtype"]) or _SAFETENSORS_INTEGERS.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {entry['dtype']}")
        array = np.frombuffer(entry["data"], dtype=dtype).reshape(entry["shape"])
        if entry["dtype"] in _SAFETENSORS_FLOATS:
            array = array.astype(np.float32)
        tensors[name] = array
    return tensors


def _google_names_by_huggingface_name(config: BertConfig) -> dict[str, str]:
    """{Hugging Face name: google name}, with BertModel's unprefixed names and the old
    `LayerNorm.gamma` / `.beta` names (pytorch-pretrained-bert) as aliases."""
    names = {}
    for google_name in google_variable_shapes(config):
        hf_name = huggingface_name(google_name)
        aliases = [hf_name]
        if hf_name.startswith("bert."):
            aliases.append(hf_name[len("bert.") :])
        for alias in list(aliases):
            if ".LayerNorm." in alias:
                aliases.append(re.sub(r"\.weight$", ".gamma", re.sub(r"\.bias$", ".beta", alias)))
        for alias in aliases:
            names[alias] = google_name
    return names


def read_huggingface(
    path: str, *, config: BertConfig | None = None, allow_unexpected: bool = False
) -> Weights:
    """Reads a Hugging Face BERT folder (`config.json` + `model.safetensors`, or shards listed
    in `model.safetensors.index.json`).

    Args:
      path: the folder (or its .safetensors file).
      config: the model's config; default: the folder's `config.json` (model_type "bert").
      allow_unexpected: leave out names that are not BERT weights (e.g. a fine-tuned
        `classifier.weight`) instead of failing.

    Returns:
      The weights. `cls.predictions.decoder.weight`, where saved, must equal the word
      embeddings (BERT ties them, and so does our model).

    Raises:
      FileNotFoundError: no safetensors in the folder (the message says what to do with a
        `pytorch_model.bin`).
      CheckpointMismatchError, ValueError: names or shapes do not fit, untied output
        embeddings, not a BERT config.
    """
    folder = path.rstrip("/")
    if folder.endswith(".safetensors"):
        folder = storage.dirname(folder)
    index_path = storage.join(folder, SAFETENSORS_INDEX_FILE)
    if storage.exists(storage.join(folder, SAFETENSORS_FILE)):
        files = [storage.join(folder, SAFETENSORS_FILE)]
    elif storage.exists(index_path):
        weight_map = read_json(index_path).get("weight_map", {})
        files = [storage.join(folder, name) for name in sorted(set(weight_map.values()))]
    elif storage.exists(storage.join(folder, "pytorch_model.bin")):
        raise FileNotFoundError(
            f"{folder}: only pytorch_model.bin, no {SAFETENSORS_FILE}; re-save it with "
            "transformers (`BertForPreTraining.from_pretrained(folder).save_pretrained(new_"
            "folder)` writes safetensors) and convert that"
        )
    else:
        raise FileNotFoundError(f"{folder}: no {SAFETENSORS_FILE} (not a Hugging Face folder)")
    config_path = storage.join(folder, HUGGINGFACE_CONFIG_FILE)
    if config is None:
        if not storage.exists(config_path):
            raise FileNotFoundError(f"{folder}: no {HUGGINGFACE_CONFIG_FILE}")
        config = huggingface_config(config_path)
    raw: dict[str, np.ndarray] = {}
    for file in files:
        raw.update(_read_safetensors(file))
    google_names = _google_names_by_huggingface_name(config)
    tensors: dict[str, np.ndarray] = {}
    dropped, unexpected = [], {}
    decoder_weight = decoder_bias = None
    for name, array in raw.items():
        stripped = name[len("bert.") :] if name.startswith("bert.") else name
        if _HUGGINGFACE_BUFFERS.search(name):
            dropped.append(name)
        elif name == "cls.predictions.decoder.weight":
            decoder_weight = array
        elif name == "cls.predictions.decoder.bias":
            decoder_bias = array
        elif name in google_names or stripped in google_names:
            google_name = google_names.get(name) or google_names[stripped]
            tensors[google_name] = array.T if transposed_in_huggingface(google_name) else array
        else:
            unexpected[name] = array
    word_embeddings = tensors.get("bert/embeddings/word_embeddings")
    if (
        decoder_weight is not None
        and word_embeddings is not None
        and not np.array_equal(decoder_weight, word_embeddings)
    ):
        raise ValueError(
            f"{folder}: cls.predictions.decoder.weight differs from the word embeddings "
            "(untied output embeddings); BERT, and this trainer's model, tie them"
        )
    if decoder_bias is not None:
        bias = tensors.setdefault("cls/predictions/output_bias", decoder_bias)
        if not np.array_equal(bias, decoder_bias):
            raise ValueError(
                f"{folder}: cls.predictions.decoder.bias differs from cls.predictions.bias"
            )
    # Report unexpected names as they are in the file; check_weights sees them by that name.
    tensors.update(unexpected)
    return check_weights(
        tensors,
        config,
        source=folder,
        dropped=dropped,
        files=[*files, config_path] if storage.exists(config_path) else files,
        allow_unexpected=allow_unexpected,
    )


def huggingface_architecture(parts: Sequence[str]) -> str:
    """The transformers class whose state dict holds exactly these parts."""
    heads = {"masked_lm", "next_sentence"} & set(parts)
    if heads == {"masked_lm", "next_sentence"}:
        return "BertForPreTraining"
    if heads == {"masked_lm"}:
        return "BertForMaskedLM"
    if heads == {"next_sentence"}:
        return "BertForNextSentencePrediction"
    return "BertModel"


def write_huggingface(weights: Weights, output_dir: str) -> list[str]:
    """Writes `config.json` and `model.safetensors` for transformers' `from_pretrained`.

    With heads, the names are `BertForPreTraining`'s ("bert." in front, "cls." heads); without,
    a bare `BertModel`'s. The tied `cls.predictions.decoder.weight` is not stored (transformers
    ties it to the word embeddings on loading, as its own `save_pretrained` does).

    Returns:
      The files written.
    """
    storage.makedirs(output_dir)
    architecture = huggingface_architecture(weights.parts)
    arrays = {}
    for name, array in weights.tensors.items():
        hf_name = huggingface_name(name)
        if architecture == "BertModel":
            hf_name = hf_name[len("bert.") :]
        arrays[hf_name] = np.ascontiguousarray(
            array.T if transposed_in_huggingface(name) else array
        )
    model_path = storage.join(output_dir, SAFETENSORS_FILE)
    # "format": "pt" is what transformers expects in the header of PyTorch-loadable files.
    storage.atomic_write(model_path, _safetensors().numpy.save(arrays, metadata={"format": "pt"}))
    values = {
        **weights.config.to_dict(),
        "model_type": "bert",
        "architectures": [architecture],
        "position_embedding_type": "absolute",
        "tie_word_embeddings": True,
        "pad_token_id": 0,
    }
    config_path = storage.join(output_dir, HUGGINGFACE_CONFIG_FILE)
    storage.atomic_write(config_path, json.dumps(values, indent=2, sort_keys=True) + "\n")
    return [model_path, config_path]
