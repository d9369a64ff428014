"""The optimizer and learning-rate schedule, built from TrainerConfig (the optimizer lives outside the model)."""

from __future__ import annotations

import jax
import optax

from genrec.config import ConfigError, TrainerConfig


def schedule(cfg: TrainerConfig) -> optax.Schedule:
  warmup = max(0, min(cfg.warmup_steps, cfg.steps))
  peak, floor = cfg.learning_rate, cfg.learning_rate * cfg.min_lr_ratio
  if cfg.schedule == "constant":
    decay = optax.constant_schedule(peak)
  elif cfg.schedule == "cosine":
    decay = optax.cosine_decay_schedule(peak, max(1, cfg.steps - warmup), alpha=cfg.min_lr_ratio)
  elif cfg.schedule == "inverse_sqrt":
    decay = lambda step: max(peak, floor) * (max(warmup, 1) / (step + max(warmup, 1))) ** 0.5
  else:
    raise ConfigError(f"trainer.schedule must be one of ['constant', 'cosine', 'inverse_sqrt'], got {cfg.schedule!r}")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def optimizer(cfg: TrainerConfig) -> optax.GradientTransformation:
  """AdamW with optional global-norm clipping. Weight decay skips 1-D parameters (norm scales, biases)."""
  decay_mask = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
  parts.append(optax.adamw(schedule(cfg), b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay_mask))
  return optax.chain(*parts)
