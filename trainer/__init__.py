"""The TF2 trainer: model, pretraining loop, checkpoint formats, export.

Every module here needs TensorFlow, so the package imports it first, without its start-up
chatter (`contracts.command_line.import_tensorflow_quietly`).
"""

from contracts import command_line

command_line.import_tensorflow_quietly()
