"""Launchers that run the project in the cloud (see docs/launch.md).

- `python -m launch.dataflow`: the three data stages on Dataflow, one after the other.
- `python -m launch.tpu_pod`: the trainer on a Cloud TPU VM or pod slice.
- `python -m launch.gpu_vm`: the trainer on one Compute Engine VM with GPUs.
- `python -m launch.demo` (`make demo`): every stage on the bundled sample, on this machine.
"""
