"""trainer.distribution: strategy names, and the TPU path as far as a CPU machine goes."""

from __future__ import annotations

import json

import pytest
import tensorflow as tf

from trainer import distribution


def test_auto_is_one_device_on_a_cpu_and_tpu_when_a_tpu_is_named(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribution.resolve_strategy_name("auto") == "one_device"
    assert distribution.resolve_strategy_name("auto", tpu="pod-v3-32") == "tpu"
    assert distribution.resolve_strategy_name("mirrored") == "mirrored"
    cluster = {"cluster": {"worker": ["a:2222", "b:2222"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    assert distribution.resolve_strategy_name("auto") == "multi_worker"


def test_bad_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown strategy 'gpu'; choose one of auto, tpu"):
        distribution.resolve_strategy_name("gpu")
    with pytest.raises(ValueError, match="--tpu='pod' needs --strategy=tpu"):
        distribution.resolve_strategy_name("mirrored", tpu="pod")


def test_one_device_strategy_on_cpu():
    strategy = distribution.get_strategy("auto")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1


def test_unknown_tpu_name_fails_with_the_name_and_what_tpu_accepts():
    with pytest.raises(distribution.TpuResolutionError) as raised:
        distribution.get_strategy("tpu", tpu="no-such-tpu-v3-32")
    message = str(raised.value)
    assert "'no-such-tpu-v3-32'" in message
    assert "'local' when running on a TPU VM" in message


def test_local_tpu_on_a_machine_without_one_says_so():
    with pytest.raises(
        distribution.TpuResolutionError, match="no TPU could be initialised on this machine"
    ):
        distribution.resolve_tpu("local")
    with pytest.raises(distribution.TpuResolutionError, match="needs --tpu"):
        distribution.resolve_tpu("")
