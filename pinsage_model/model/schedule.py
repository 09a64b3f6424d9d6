"""Learning-rate schedule (paper 3.3): linear warm-up, then exponential decay per epoch.

The peak is ``base_lr * batch / 256`` (linear scaling rule), reached over the first epoch.
"""

from __future__ import annotations

# Decay of the learning rate per epoch after warm-up (a constant: no shipped config, search or
# ablation has changed it).
EPOCH_DECAY = 0.9


class WarmupExponentialDecay:
    """Learning rate: linear warm-up over ``warmup_steps`` to ``peak``, then ``peak * decay^(epochs after warm-up)``."""

    def __init__(self, peak: float, warmup_steps: int, steps_per_epoch: int, decay: float):
        self.peak, self.warmup_steps, self.steps_per_epoch, self.decay = peak, warmup_steps, steps_per_epoch, decay

    def __call__(self, step):
        import tensorflow as tf

        step = tf.cast(step, tf.float32)
        warm = self.peak * tf.minimum(1.0, (step + 1.0) / float(max(1, self.warmup_steps)))
        after = tf.maximum(0.0, step - float(self.warmup_steps)) / float(self.steps_per_epoch)
        return tf.where(step < float(self.warmup_steps), warm, self.peak * tf.pow(self.decay, after))


def make_schedule(peak: float, warmup_steps: int, steps_per_epoch: int, decay: float):
    import keras

    class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __init__(self):
            self.fn = WarmupExponentialDecay(peak, warmup_steps, steps_per_epoch, decay)

        def __call__(self, step):
            return self.fn(step)

        def get_config(self):
            return {"peak": peak, "warmup_steps": warmup_steps, "steps_per_epoch": steps_per_epoch, "decay": decay}

    return _Schedule()
