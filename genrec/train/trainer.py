"""The one training loop. It talks to models only through their task (genrec.train.tasks) and the registry.

    results = Trainer(cfg, workdir, stages=stages).run()

A model whose task reads other runs (a tokenizer, an item encoder, a CF model) gets their folders as `stages`;
genrec.pipeline resolves (and trains) them first: `genrec.pipeline.train(cfg, workdir)` is the whole story.

Resumes from the latest checkpoint in `workdir` by default; keeps the best model by a validation metric in
`workdir/best`; writes `workdir/results.json` at the end.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from genrec import config as config_lib
from genrec import locks
from genrec.config import ConfigError, ExperimentConfig
from genrec.data import load_dataset
from genrec.files import atomic_write, run_folder
from genrec.train import checkpoint as ckpt_lib
from genrec.train import (
  next_item,  # noqa: F401  (registers the engine's own task)
  optim,
  sharding,
)
from genrec.train.logging import RunLogger, log_results
from genrec.train.state import PlacedModel, abstract_with, cast_floating, opt_shardings, place, reseed
from genrec.train.tasks import Stages, get_task

# Keys that may change between a run and its resumption (they do not change what a step computes). The mesh may:
# a preemptible job comes back on another slice size, the checkpoint restores onto the new shardings, and the
# data order is indexed by the global step (not by devices or processes), so it continues at the same example.
RESUMABLE_KEYS = (
  "mesh.data",
  "mesh.fsdp",
  "mesh.tensor",
  "mesh.rules",
  "trainer.steps",
  "trainer.eval_every",
  "trainer.log_every",
  "trainer.checkpoint_every",
  "trainer.progress",
  "trainer.patience",
  "eval.batch_size",
)


# A few batches ahead is plenty (grain's default of 500 wastes CPU and memory on a resume).
READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)


class NonFiniteLossError(FloatingPointError):
  pass


def make_train_step(placed: PlacedModel, tx, cfg: ExperimentConfig):
  graphdef = placed.graphdef
  accum = cfg.trainer.grad_accum
  dtype = jnp.dtype(cfg.trainer.compute_dtype)
  base_key = jax.random.key(cfg.trainer.seed)

  def loss_fn(params, other, rngs, micro, key):
    # Variables must be created inside this trace (NNX refuses to mutate RNG counters from an outer one).
    model = nnx.merge(graphdef, cast_floating(params, dtype), reseed(rngs, key), jax.tree.map(lambda x: x, other))
    loss, metrics = model.loss(micro)
    new_other = nnx.state(model, nnx.Not(nnx.Any(placed.trainable, nnx.RngState)))
    return loss.astype(jnp.float32), (metrics, new_other)

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def step(state, rngs, batch):
    params, other, opt_state, step_num = state["params"], state["other"], state["opt"], state["step"]
    key = jax.random.fold_in(base_key, step_num)
    if accum == 1:
      (loss, (metrics, other)), grads = grad_fn(params, other, rngs, batch, key)
    else:
      micro = jax.tree.map(lambda x: x.reshape(accum, x.shape[0] // accum, *x.shape[1:]), batch)

      def body(carry, inp):
        grads_acc, other = carry
        i, mb = inp
        (loss, (metrics, other)), grads = grad_fn(params, other, rngs, mb, jax.random.fold_in(key, i))
        return (jax.tree.map(jnp.add, grads_acc, grads), other), (loss, metrics)

      zeros = jax.tree.map(jnp.zeros_like, params)
      (grads, other), (losses, metrics) = jax.lax.scan(body, (zeros, other), (jnp.arange(accum), micro))
      grads = jax.tree.map(lambda g: g / accum, grads)
      loss, metrics = losses.mean(), jax.tree.map(jnp.mean, metrics)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
    return {"params": params, "other": other, "opt": opt_state, "step": step_num + 1}, metrics

  return step


class Trainer:
  """Holds the compiled functions of one run; `run()` trains, evaluates and checkpoints."""

  # Training time of the processes before this one (a resumed run's total), from the checkpoint's meta.
  seconds_before = 0.0
  best_seconds: float | None = None
  _t0: float | None = None

  def __init__(
    self,
    cfg: ExperimentConfig,
    workdir: str | Path,
    *,
    data=None,
    mesh=None,
    resume: bool = True,
    init_from: str | Path | None = None,
    init_which: str = "best",
    stages: Stages | None = None,
  ):
    self.workdir = run_folder(workdir, "workdir")
    check_settings(cfg)
    # One trainer per workdir: a second process waits here (and says for whom) until the first is done.
    self._locked = jax.process_index() == 0
    created = not self.workdir.exists()
    if self._locked:
      locks.acquire(self.workdir, f"genrec train {cfg.model_name}:{cfg.preset}")
    try:
      self._setup(cfg, data, mesh, resume, init_from, init_which, stages)
    except BaseException:
      self.close()
      if created:  # a config refused before any work leaves no folder behind
        locks.remove_if_unused(self.workdir)
      raise

  def _setup(self, cfg, data, mesh, resume, init_from, init_which, stages):
    self.data = data if data is not None else load_dataset(cfg.data)
    self.task = get_task(cfg, self.data, stages)
    self.cfg = cfg = self.task.cfg = self.task.configure()
    if cfg.trainer.best_mode not in ("max", "min"):
      raise ConfigError(f"trainer.best_mode must be 'max' or 'min', got {cfg.trainer.best_mode!r}")
    if cfg.trainer.batch_size % cfg.trainer.grad_accum:
      raise ConfigError(
        f"trainer.batch_size={cfg.trainer.batch_size} is not divisible by trainer.grad_accum={cfg.trainer.grad_accum}"
      )
    self.mesh = mesh if mesh is not None else sharding.make_mesh(cfg.mesh)
    dp = sharding.data_parallel_size(self.mesh)
    if (cfg.trainer.batch_size // cfg.trainer.grad_accum) % dp or cfg.eval.batch_size % dp:
      raise ConfigError(
        f"batch sizes (trainer {cfg.trainer.batch_size} / grad_accum {cfg.trainer.grad_accum}, "
        f"eval {cfg.eval.batch_size}) must divide over {dp} data-parallel devices"
      )
    self.checkpoints = ckpt_lib.Checkpointer(self.workdir / "checkpoints", max_to_keep=cfg.trainer.keep_checkpoints)
    self.best = ckpt_lib.Checkpointer(self.workdir / "best", max_to_keep=1)
    resuming = resume and self.checkpoints.latest_step() is not None
    self.placed = place(cfg, self.mesh)
    if not resuming:
      self.task.prepare(self.placed, jax.random.key(cfg.trainer.seed))
    self.init_info = None
    if init_from is not None and not resuming:  # a resumed run continues from its own checkpoint
      from genrec.train.warm_start import warm_start

      self.init_info = warm_start(self.placed, cfg, self.data, init_from, init_which)
    self.tx = optim.optimizer(cfg.trainer)
    self.schedule = optim.schedule(cfg.trainer)
    self.batch_sharding = sharding.batch_sharding(self.mesh)
    p_sh = self.placed.param_shardings
    opt_sh = opt_shardings(self.tx, self.placed.params, p_sh, self.mesh)
    rep = sharding.replicated(self.mesh)
    self.state_shardings = {"params": p_sh, "other": self.placed.other_shardings, "opt": opt_sh, "step": rep}
    with jax.set_mesh(self.mesh):
      opt_state = jax.jit(self.tx.init, out_shardings=opt_sh)(self.placed.params)
    self.state = {
      "params": self.placed.params,
      "other": self.placed.other,
      "opt": opt_state,
      "step": jax.device_put(jnp.zeros((), jnp.int32), rep),
    }
    rngs_sh = jax.tree.map(lambda _: rep, self.placed.rngs)
    self._step = jax.jit(
      make_train_step(self.placed, self.tx, cfg),
      in_shardings=(self.state_shardings, rngs_sh, self.batch_sharding),
      out_shardings=(self.state_shardings, rep),
      donate_argnums=0,
    )
    self._evaluate = self.task.evaluator(self.placed)
    self.train_data = self.task.train_dataset(process_index=jax.process_index(), process_count=jax.process_count())
    self.data_state = {"next_index": 0}
    self.best_value = -np.inf
    self.evals_since_best = 0
    if resuming:
      self._resume()

  # -- checkpoints ------------------------------------------------------------------------------------------
  def _meta(self, extra=None) -> dict:
    return {
      "config": config_lib.to_dict(self.cfg),
      "model_name": self.cfg.model_name,
      "preset": self.cfg.preset,
      "step": int(self.state["step"]),
      "data_state": self.data_state,
      "best_value": float(self.best_value),
      "evals_since_best": self.evals_since_best,
      "train_seconds": self.seconds_before if self._t0 is None else time.time() - self._t0,
      "seconds_to_best": self.best_seconds,
      "format": "genrec-checkpoint-1",
      **(extra or {}),
    }

  def _saved_state(self):
    return {k: self.state[k] for k in ("params", "other", "opt", "step")}

  def _resume(self):
    """Restores the newest readable checkpoint. A damaged one (truncated, altered, half-deleted) is reported
    and skipped for the one before it; only when none is readable is it an error."""
    target = abstract_with(self._saved_state(), self.state_shardings)
    failures = []
    for step in sorted(self.checkpoints.steps(), reverse=True):
      try:
        meta = self.checkpoints.read_meta(step)
        check_compatible(config_lib.from_dict(ExperimentConfig, meta["config"]), self.cfg, self.workdir)
        self.state = self.checkpoints.restore(step, target)
        break
      except ckpt_lib.CheckpointError as e:
        failures.append(str(e))
        if jax.process_index() == 0:
          print(f"genrec: skipping a damaged checkpoint: {e}", file=sys.stderr)
    else:
      raise ckpt_lib.CheckpointError(
        f"no readable checkpoint in {self.checkpoints.directory}: "
        + "; ".join(failures)
        + " (if no other genrec train is using this workdir, pass --fresh to delete it and start over)"
      )
    if failures and jax.process_index() == 0:
      print(f"genrec: resuming from step {step}, the newest readable checkpoint", file=sys.stderr)
    self.data_state = meta["data_state"]
    self.best_value = meta.get("best_value", -np.inf)
    self.evals_since_best = meta.get("evals_since_best", 0)
    self.seconds_before, self.best_seconds = meta.get("train_seconds", 0.0), meta.get("seconds_to_best")

  # -- loop -------------------------------------------------------------------------------------------------
  def evaluate(self, split: str, params=None, other=None) -> tuple[dict, dict]:
    params = self.state["params"] if params is None else params
    other = self.state["other"] if other is None else other
    return self._evaluate(params, other, split)

  def run(self, *, stop_at: int | None = None) -> dict | None:
    """Trains to trainer.steps, then evaluates the best model and returns the results.

    stop_at: pause after that step instead (checkpoint written, no final evaluation; returns None) —
    a later Trainer on the same workdir resumes exactly where this one stopped.
    """
    cfg, tcfg = self.cfg, self.cfg.trainer
    if not self._locked and jax.process_index() == 0:  # run() again after an earlier run() released the workdir
      locks.acquire(self.workdir, f"genrec train {cfg.model_name}:{cfg.preset}")
      self._locked = True
    start_step = int(self.state["step"])
    logger = RunLogger(self.workdir, total_steps=tcfg.steps, initial_step=start_step, progress=tcfg.progress)
    if jax.process_index() == 0:
      self.workdir.mkdir(parents=True, exist_ok=True)
      atomic_write(self.workdir / "config.json", config_lib.to_json(cfg))
    iterator = iter(self.train_data.to_iter_dataset(READ_OPTIONS))
    iterator.set_state(self.data_state)
    pending = None
    self._t0 = t0 = time.time() - self.seconds_before  # seconds count on from the checkpoint's total
    best_time = self.best_seconds
    step = start_step
    last = tcfg.steps if stop_at is None else min(stop_at, tcfg.steps)
    stop = False
    self.interrupted = None
    if tcfg.steps == 0 and self.best.latest_step() is None:  # a model fitted in prepare() (no gradient steps)
      self._validate(logger, 0)
      logger.flush()
      self.checkpoints.save(0, self._saved_state(), self._meta())
    restore_handlers = _catch_stop_signals(self)
    try:
      while step < last:
        local = next(iterator)
        batch = {k: jax.make_array_from_process_local_data(self.batch_sharding, v) for k, v in local.items()}
        self.state, metrics = self._step(self.state, self.placed.rngs, batch)
        step += 1
        self.data_state = iterator.get_state()
        if pending is not None:  # metrics read one step late: no host sync on this step
          self._log_train(logger, *pending)
        pending = (step, metrics)
        stop = False
        if step % tcfg.eval_every == 0 or step == tcfg.steps:
          self._log_train(logger, *pending)
          pending = None
          stop = self._validate(logger, step)
          if self.evals_since_best == 0:
            best_time = self.best_seconds = time.time() - t0
        if step % tcfg.checkpoint_every == 0 or step in (tcfg.steps, last) or stop:
          pending = self._log_pending(logger, pending)
          self.checkpoints.save(step, self._saved_state(), self._meta())
        logger.advance(1)
        if stop:
          logger.message(f"early stop at step {step}: no gain in {tcfg.best_metric} for {tcfg.patience} evals")
          break
        if self.interrupted is not None:
          if step % tcfg.checkpoint_every and step not in (tcfg.steps, last):
            pending = self._log_pending(logger, pending)
            self.checkpoints.save(step, self._saved_state(), self._meta())
          logger.message(
            f"{self.interrupted}: stopped after step {step} with a checkpoint; the same "
            f"`genrec train` on {self.workdir} resumes from it"
          )
          break
      if pending is not None:
        self._log_train(logger, *pending)
    finally:
      restore_handlers()
      logger.close()
    train_seconds = time.time() - t0
    try:
      if (step < tcfg.steps and not stop) or self.interrupted is not None:
        return None
      return self.finish(train_seconds=train_seconds, best_seconds=best_time, steps=step)
    finally:
      self.close()

  def close(self) -> None:
    """Releases the workdir's lock (run() does at its end; the trainer can still evaluate)."""
    if self._locked:
      self._locked = False
      locks.release(self.workdir)

  def _log_pending(self, logger, pending) -> None:
    """Writes the step's train row (and every row before it) before its checkpoint: a kill right after the
    save cannot lose them."""
    if pending is not None:
      self._log_train(logger, *pending)
    logger.flush()

  def _log_train(self, logger, step, metrics):
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    values["lr"] = float(self.schedule(step - 1))
    if not np.isfinite(values["loss"]):
      raise NonFiniteLossError(
        f"loss became {values['loss']} at step {step} (lr {values['lr']:.3g}); lower "
        "trainer.learning_rate, enable trainer.clip_norm, or check the data"
      )
    if step % self.cfg.trainer.log_every == 0:
      logger.write(step, "train", values)
    logger.advance(0, {"loss": values["loss"]})

  def _validate(self, logger, step) -> bool:
    summary, _ = self.evaluate("valid")
    logger.write(step, "valid", summary)
    name = self.cfg.trainer.best_metric
    if name not in summary:
      raise ConfigError(f"trainer.best_metric={name!r} is not a validation metric; choose from {sorted(summary)}")
    value = summary[name]
    score = value if self.cfg.trainer.best_mode == "max" else -value
    logger.message(
      f"step {step}: valid {name}={value:.4f} "
      + " ".join(
        f"{k}={summary[k]:.4f}" for k in sorted(summary) if k.startswith(("recall@", "mrr@", "uauc", "logloss"))
      )
    )
    if score > self.best_value:
      self.best_value, self.evals_since_best = score, 0
      self.best.save(
        step, {"params": self.state["params"], "other": self.state["other"]}, self._meta({"valid": summary})
      )
    else:
      self.evals_since_best += 1
    return self.cfg.trainer.patience > 0 and self.evals_since_best >= self.cfg.trainer.patience

  def best_state(self):
    """(params, other) of the kept best checkpoint, or of the current state when none was kept."""
    params, other = self.state["params"], self.state["other"]
    best_step = self.best.latest_step()
    if best_step is None:
      return params, other
    target = abstract_with(
      {"params": params, "other": other},
      {"params": self.state_shardings["params"], "other": self.state_shardings["other"]},
    )
    restored = self.best.restore(best_step, target)
    return restored["params"], restored["other"]

  def finish(self, *, train_seconds: float, best_seconds: float | None, steps: int) -> dict:
    """Evaluates the best checkpoint (or the last state) on valid and test; writes results.json."""
    params, other = self.best_state()
    best_step = self.best.latest_step()
    valid, _ = self.evaluate("valid", params, other)
    test, groups = self.evaluate("test", params, other)
    results = {
      "model": self.cfg.model_name,
      "preset": self.cfg.preset,
      "protocol": self.task.protocol(),
      "valid": valid,
      "test": test,
      "groups": {"test": groups},
      "best_step": best_step,
      "steps": steps,
      "train_seconds": round(train_seconds, 2),
      "seconds_to_best": None if best_seconds is None else round(best_seconds, 2),
    }
    if self.init_info is not None:
      results["init_from"] = self.init_info
    results.update(self.task.finish(self, params, other))
    write_results(self.workdir, results)
    log_results(self.workdir, config_lib.to_dict(self.cfg), results)
    return results


def check_settings(cfg: ExperimentConfig) -> None:
  """The trainer, data and eval numbers that must be positive, checked before any folder is created."""
  t = cfg.trainer
  at_least = {
    "trainer.steps": (t.steps, 0),
    "trainer.batch_size": (t.batch_size, 1),
    "trainer.grad_accum": (t.grad_accum, 1),
    "trainer.eval_every": (t.eval_every, 1),
    "trainer.checkpoint_every": (t.checkpoint_every, 1),
    "trainer.log_every": (t.log_every, 1),
    "eval.batch_size": (cfg.eval.batch_size, 1),
    "data.max_len": (cfg.data.max_len, 1),
  }
  for key, (value, low) in at_least.items():
    if value < low:
      raise ConfigError(f"{key} must be >= {low}, got {value}")
  if not cfg.eval.ks or min(cfg.eval.ks) < 1:
    raise ConfigError(f"eval.ks must be cutoffs >= 1 (e.g. 5,10), got {list(cfg.eval.ks)}")
  optim.schedule(cfg.trainer)  # an unknown trainer.schedule is an error here, not after mkdir
  config_lib.check_values(cfg)


def _catch_stop_signals(trainer) -> Callable[[], None]:
  """SIGTERM/SIGINT set `trainer.interrupted`; the loop finishes its step, checkpoints and returns. Returns a
  function restoring the previous handlers. (Only the main thread may install handlers.)"""
  if threading.current_thread() is not threading.main_thread():
    return lambda: None

  def handler(signum, frame):
    del frame
    trainer.interrupted = signal.Signals(signum).name

  previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
  return lambda: [signal.signal(sig, old) for sig, old in previous.items()]


def check_compatible(saved: ExperimentConfig, cfg: ExperimentConfig, workdir: Path) -> None:
  a, b = config_lib.flat(config_lib.to_dict(saved)), config_lib.flat(config_lib.to_dict(cfg))
  diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS)
  if diff:
    raise ConfigError(
      f"{workdir} holds a run with a different config ({', '.join(diff[:6])} differ); "
      "use another --workdir, or, if no other genrec train is using it, pass --fresh to delete it and start over"
    )


def write_results(workdir: Path, results: dict) -> None:
  """Atomic: a reader never sees a half-written results.json."""
  if jax.process_index() != 0:
    return
  workdir.mkdir(parents=True, exist_ok=True)
  atomic_write(workdir / "results.json", json.dumps(results, indent=2, sort_keys=True))


def train(cfg: ExperimentConfig, workdir: str | Path, **kwargs) -> dict:
  return Trainer(cfg, workdir, **kwargs).run()
