"""BERT's optimisers and learning-rate schedule, as plain TensorFlow (no Keras optimizer).

- `learning_rate`: linear warmup from 0 to the peak over `num_warmup_steps`, polynomial decay
  (power 1 = linear, google-research/bert) from the peak to `end_learning_rate` at
  `num_train_steps`; a pure function of the step, so a resumed run continues the same curve.
- `AdamW`: google-research/bert's AdamWeightDecayOptimizer: Adam moments without bias
  correction, epsilon 1e-6, decoupled weight decay added to the update, and no decay on
  LayerNorm parameters and biases.
- `Lamb`: You et al. 2019 (as NVIDIA's and Model Garden's BERT): bias-corrected Adam update plus
  weight decay, scaled per variable by the trust ratio ||w|| / ||update||; LayerNorm and bias
  variables get neither decay nor the trust ratio.
- `LossScale`: dynamic loss scaling for fp16 (halve on a non-finite step, double after
  `growth_steps` finite ones), with its state in variables so checkpoints carry it.

Why not Keras 3's optimizers: the training loop all-reduces gradients itself (once per update,
after gradient accumulation) and skips non-finite steps for every replica at once; Keras 3's
AdamW also applies bias correction and a different epsilon than BERT's, and its optimizers'
tf.distribute path is what the Keras issues about NaNs and hangs under TPUStrategy point at.

The update functions run in replica context inside `strategy.run`, after the gradients were
all-reduced: every replica computes the same update and writes its own copy through
`strategy.extended.update`, which is how Keras 2 optimizers updated mirrored and TPU variables.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import tensorflow as tf

# Substrings of a variable's name (its Google checkpoint path) that exclude it from weight
# decay, as google-research/bert's `exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"]`.
NO_DECAY_PATTERNS = ("LayerNorm", "layer_norm", "bias")


def learning_rate(
    step: tf.Tensor,
    *,
    peak_learning_rate: float,
    num_train_steps: int,
    num_warmup_steps: int,
    end_learning_rate: float = 0.0,
    decay_power: float = 1.0,
) -> tf.Tensor:
    """The learning rate of update number `step` (0-based), float32 scalar.

    As google-research/bert's `create_optimizer`: polynomial decay over `num_train_steps`, and
    during the first `num_warmup_steps` the linear warmup `peak * step / num_warmup_steps`
    (so update 0 has rate 0, as there and in Hugging Face's linear schedule).
    """
    step = tf.cast(step, tf.float32)
    total = float(max(num_train_steps, 1))
    fraction_left = 1.0 - tf.minimum(step, total) / total
    decayed = (peak_learning_rate - end_learning_rate) * tf.pow(
        fraction_left, decay_power
    ) + end_learning_rate
    if num_warmup_steps <= 0:
        return decayed
    warmup = peak_learning_rate * step / float(num_warmup_steps)
    return tf.where(step < float(num_warmup_steps), warmup, decayed)


def _name(variable) -> str:
    # Keras 3 variables carry their full path; plain tf.Variables their name.
    return getattr(variable, "path", None) or variable.name


def _underlying(variable):
    """The tf.Variable (mirrored / TPU variable under a strategy) behind a Keras variable."""
    return (
        getattr(variable, "value", variable) if not isinstance(variable, tf.Variable) else variable
    )


def replica_update(variable, update_fn, *args):
    """Runs `update_fn(local_variable, *local_args)` on each copy of a (distributed) variable.

    In replica context this updates the replica's own copy (the caller guarantees that every
    replica computes the same values); without a strategy it is a plain call.
    """
    strategy = tf.distribute.get_strategy()
    return strategy.extended.update(variable, update_fn, args=args, group=False)


def _assign(variable, value):
    return variable.assign(value)


def replica_assign(variable, value):
    """Assigns `value` to each copy of a (distributed) variable (see `replica_update`)."""
    return replica_update(variable, _assign, value)


class _Optimizer(tf.Module):
    """Slots and the shared apply logic; subclasses define `_update_direction`."""

    slot_names: tuple[str, ...] = ("m", "v")
    optimizer_name = "optimizer"  # the tf.Module name; each subclass has its own

    def __init__(
        self,
        variables: Sequence,
        *,
        weight_decay_rate: float = 0.01,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-6,
        no_decay_patterns: Sequence[str] = NO_DECAY_PATTERNS,
    ):
        super().__init__(name=self.optimizer_name)
        self.weight_decay_rate = weight_decay_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self._targets = [_underlying(v) for v in variables]
        self._decay = [
            weight_decay_rate > 0 and not any(re.search(p, _name(v)) for p in no_decay_patterns)
            for v in variables
        ]
        self.variable_names = [_name(v) for v in variables]
        # Slots are created where the optimiser is made: under the strategy's scope they are
        # mirrored like the model. Lists of tf.Variables are tracked for checkpoints by index.
        self.m = [
            tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False, name=f"m_{i}")
            for i, v in enumerate(self._targets)
        ]
        self.v = [
            tf.Variable(tf.zeros(v.shape, tf.float32), trainable=False, name=f"v_{i}")
            for i, v in enumerate(self._targets)
        ]

    def decays(self) -> dict[str, bool]:
        """{variable name: whether weight decay applies} (LayerNorm and biases excluded)."""
        return dict(zip(self.variable_names, self._decay, strict=True))

    def new_values(
        self,
        gradients: Sequence[tf.Tensor],
        *,
        learning_rate: tf.Tensor,
        step: tf.Tensor,
        apply: tf.Tensor | bool = True,
    ) -> list[tf.Tensor]:
        """The values of every variable and slot after one update, without writing them.

        A pure function of the variables' current values, so it can be XLA-compiled inside a
        replica step even where writing mirrored variables needs a cross-replica `merge_call`
        (MirroredStrategy on CPUs), which a nested compiled function may not contain.

        Args:
          gradients: float32, dense, already all-reduced and clipped, in the order of the
            variables given at construction.
          learning_rate: float32 scalar.
          step: the 0-based update number (LAMB's bias correction).
          apply: bool scalar; False returns the current values (a skipped update).

        Returns:
          [variables..., m..., v...] new values, for `assign`.
        """
        if len(gradients) != len(self._targets):
            raise ValueError(f"{len(gradients)} gradients for {len(self._targets)} variables")
        new_variables, new_m, new_v = [], [], []
        for index, gradient in enumerate(gradients):
            variable = self._targets[index].read_value()
            m = self.m[index].read_value()
            v = self.v[index].read_value()
            m_next = self.beta_1 * m + (1.0 - self.beta_1) * gradient
            v_next = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(gradient)
            direction = self._update_direction(
                variable, m_next, v_next, step=step, decay=self._decay[index]
            )
            new_variables.append(tf.where(apply, variable - learning_rate * direction, variable))
            new_m.append(tf.where(apply, m_next, m))
            new_v.append(tf.where(apply, v_next, v))
        return new_variables + new_m + new_v

    def assign(self, values: Sequence[tf.Tensor]) -> None:
        """Writes `new_values`' result to every copy of the variables and slots."""
        targets = [*self._targets, *self.m, *self.v]
        if len(values) != len(targets):
            raise ValueError(f"{len(values)} values for {len(targets)} variables and slots")
        for target, value in zip(targets, values, strict=True):
            replica_assign(target, value)

    def apply(
        self, gradients: Sequence[tf.Tensor], *, learning_rate: tf.Tensor, step: tf.Tensor
    ) -> None:
        """One update: `assign(new_values(...))`."""
        self.assign(self.new_values(gradients, learning_rate=learning_rate, step=step))

    def _update_direction(self, variable, m, v, *, step, decay):
        raise NotImplementedError


class AdamW(_Optimizer):
    """google-research/bert's AdamWeightDecayOptimizer (no bias correction)."""

    optimizer_name = "adamw"

    def _update_direction(self, variable, m, v, *, step, decay):
        direction = m / (tf.sqrt(v) + self.epsilon)
        if decay:
            direction += self.weight_decay_rate * variable
        return direction


class Lamb(_Optimizer):
    """LAMB (You et al. 2019): Adam direction with bias correction and weight decay, scaled by
    the layer-wise trust ratio ||w|| / ||direction|| (1 where either norm is 0)."""

    optimizer_name = "lamb"

    def _update_direction(self, variable, m, v, *, step, decay):
        t = tf.cast(step, tf.float32) + 1.0
        m_hat = m / (1.0 - tf.pow(self.beta_1, t))
        v_hat = v / (1.0 - tf.pow(self.beta_2, t))
        direction = m_hat / (tf.sqrt(v_hat) + self.epsilon)
        if not decay:  # LayerNorm and bias: plain Adam, as Model Garden's exclude lists.
            return direction
        direction += self.weight_decay_rate * variable
        weight_norm = tf.norm(variable)
        direction_norm = tf.norm(direction)
        trust_ratio = tf.where(
            (weight_norm > 0.0) & (direction_norm > 0.0), weight_norm / direction_norm, 1.0
        )
        return trust_ratio * direction


def create_optimizer(
    name: str,
    variables: Sequence,
    *,
    weight_decay_rate: float,
    beta_1: float,
    beta_2: float,
    epsilon: float,
) -> _Optimizer:
    """ "adamw" or "lamb" over `variables` (create under the strategy's scope)."""
    classes = {"adamw": AdamW, "lamb": Lamb}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(classes)}")
    return classes[name](
        variables,
        weight_decay_rate=weight_decay_rate,
        beta_1=beta_1,
        beta_2=beta_2,
        epsilon=epsilon,
    )


class LossScale(tf.Module):
    """Dynamic loss scale (fp16): the loss is multiplied by `scale` before the backward pass
    and the gradients divided after, so small float16 gradients do not flush to zero.

    A non-finite step halves the scale (never below 1); `growth_steps` finite steps in a row
    double it. With `dynamic=False` the scale stays 1 (fp32 and bf16 need none).
    """

    def __init__(self, *, initial_scale: float = 2.0**15, growth_steps: int = 2000, dynamic=True):
        super().__init__(name="loss_scale")
        self.dynamic = dynamic
        self.growth_steps = growth_steps
        self.scale = tf.Variable(
            float(initial_scale) if dynamic else 1.0, trainable=False, name="scale"
        )
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")

    def new_values(self, finite: tf.Tensor) -> list[tf.Tensor]:
        """[scale, good_steps] after a step whose gradients were finite (True) or not; a pure
        function of the current values (see `_Optimizer.new_values`)."""
        scale = self.scale.read_value()
        good_steps = self.good_steps.read_value()
        if not self.dynamic:
            return [scale, good_steps]
        grow = finite & (good_steps + 1 >= self.growth_steps)
        new_scale = tf.where(
            finite, tf.where(grow, scale * 2.0, scale), tf.maximum(scale * 0.5, 1.0)
        )
        new_good_steps = tf.where(finite & ~grow, good_steps + 1, tf.zeros_like(good_steps))
        return [new_scale, new_good_steps]

    def assign(self, values: Sequence[tf.Tensor]) -> None:
        scale, good_steps = values
        replica_assign(self.scale, scale)
        replica_assign(self.good_steps, good_steps)

    def update(self, finite: tf.Tensor) -> None:
        """Adjusts the scale after a step whose gradients were finite (True) or not."""
        self.assign(self.new_values(finite))
