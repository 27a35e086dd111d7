"""The trainer runs on what the launchers install: TensorFlow, this project's wheel (no deps) and
setup.cfg's `[bert_stack] trainer_requires`, nothing else.

A TPU VM once stopped before step 1 on `No module named 'safetensors'`: the trainer imported a
package the launchers did not install. Here each trainer entry point is imported in a process
where every installed distribution outside that set is made unimportable (a meta-path finder
that refuses their top-level modules), and then runs far enough to parse its flags.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from launch import gcloud

ROOT = Path(__file__).resolve().parent.parent
ENTRY_POINTS = (
    "trainer.run_pretraining",
    "trainer.convert_checkpoint",
    "trainer.export_saved_model",
    "trainer.run_classifier",
    "trainer.distill",
    "trainer.export_classifier",
    # Quantizing is a CPU job, but its flags and conversion need no more than the trainer's:
    # LiteRT (extra `litert`) is imported when a model runs, with an error naming it.
    "trainer.quantize",
)

_CHILD = textwrap.dedent(
    """
    import importlib, importlib.metadata as md, re, sys

    allowed_roots, entry = sys.argv[1].split(","), sys.argv[2]

    def requirement_names(dist):
        names = []
        for requirement in dist.requires or ():
            if "extra ==" in requirement:
                continue  # optional extras are not installed on the training machines
            names.append(re.split(r"[\\s\\[<>=!~;(]", requirement, maxsplit=1)[0])
        return names

    allowed, todo = set(), list(allowed_roots)
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in allowed:
            continue
        allowed.add(name)
        try:
            todo.extend(requirement_names(md.distribution(name)))
        except md.PackageNotFoundError:
            pass
    blocked = {
        module
        for module, dists in md.packages_distributions().items()
        if not any(d.lower().replace("_", "-") in allowed for d in dists)
    }
    ours = {"contracts", "tokenizer", "trainer", "pipeline", "launch"}
    blocked -= ours

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (not installed)", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
    module = importlib.import_module(entry)
    module.define_flags() if hasattr(module, "define_flags") else None
    print("imported", entry)
    """
)


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_trainer_entry_points_need_only_what_the_launchers_install(entry_point):
    allowed = ["tensorflow", *gcloud.trainer_packages()]
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, ",".join(allowed), entry_point],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"imported {entry_point}" in done.stdout


def test_the_launchers_install_exactly_that_list():
    from launch import gpu_vm, tpu_pod  # noqa: F401 - they read the same setup.cfg section

    names = gcloud.trainer_packages()
    assert {"gcsfs", "safetensors", "tensorboard"} <= set(names)
    assert [line.split(">")[0].split("=")[0] for line in gcloud.requirements(names)] == list(names)
