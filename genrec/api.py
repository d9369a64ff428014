"""`genrec.load(dir)`: a trained model back from its run folder, with nothing else as input."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np

from genrec import config as config_lib
from genrec.config import ExperimentConfig, MeshConfig
from genrec import registry
from genrec.train import sharding
from genrec.train.checkpoint import CheckpointError, Checkpointer
from genrec.train.state import PlacedModel, abstract_with, place


@dataclasses.dataclass
class Run:
  """A loaded run: `model` (eval mode, parameters on `placed.mesh`), its `config`, checkpoint `meta`, and the
  items `genrec add-items` added (`added`: [{"item", "title", "text"}], ids num_items+1.. in order)."""
  workdir: Path
  config: ExperimentConfig
  meta: dict
  placed: PlacedModel
  added: list = dataclasses.field(default_factory=list)

  @property
  def model(self):
    return self.placed.model()

  @property
  def step(self) -> int:
    return self.meta["step"]

  def dataset(self):
    from genrec.data import load_dataset

    return load_dataset(self.config.data)

  def recommend(self, user: str, k: int = 10) -> list[dict]:
    """Top-k items for a source-file user id after their whole history, never an item they have seen:
    [{"item": raw id, "title", "score"}]."""
    from genrec.data.pipeline import query_example

    if not hasattr(self.placed.model(), "recommend"):
      raise ValueError(f"{self.config.model_name} is a pointwise model: it predicts P(like) for a (user, item) "
                       "pair and does not rank the catalogue; `genrec eval` reports its AUC/UAUC")
    data = self.dataset()
    u = data.user_index(str(user))
    seq = data.sequences[u]
    unseen = data.num_items + len(self.added) - len(set(seq.tolist()))
    if k < 1 or k > unseen:
      raise ValueError(f"k must be between 1 and the {unseen} items user {user} has not seen, got {k}")
    batch = query_example(data, u, max_len=self.config.data.max_len)
    ids, scores = _recommend(self.model, batch, k)
    raw = data.item_raw + [a["item"] for a in self.added]
    titles = data.item_titles + [a["title"] for a in self.added]
    return [{"item": raw[i], "title": titles[i], "score": float(s)}
            for i, s in zip(np.asarray(ids[0]).tolist(), np.asarray(scores[0]).tolist()) if i > 0]


@functools.partial(jax.jit, static_argnums=2)
def _recommend(model, batch, k: int):
  """One compiled search per (model structure, k), reused by every `Run.recommend` call."""
  return model.recommend(batch, k)


def _is_run(workdir: Path) -> bool:
  return (workdir / "best").is_dir() or (workdir / "checkpoints").is_dir()


def load(workdir: str | Path, *, which: str = "best", step: int | None = None, mesh=None,
         added_items: bool = True) -> Run:
  """Loads a run folder written by `genrec train` (with the items `genrec add-items` added, unless
  added_items=False: then the catalogue it was trained on).

  which: "best" (the kept model by validation metric) or "latest" (the last training checkpoint).
  mesh: where to place the parameters (default: every local device on the data axis, parameters
    sharded by the run's own rules — any mesh works, the checkpoint is resharded on restore).
  """
  workdir = Path(workdir)
  if not workdir.is_dir():
    raise CheckpointError(f"{workdir} does not exist")
  if not _is_run(workdir):
    raise CheckpointError(f"{workdir} is not a genrec run: no 'best/' or 'checkpoints/' folder in it "
                          "(train one with `genrec train MODEL:PRESET --workdir DIR`)")
  if which not in ("best", "latest"):
    raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
  folder = workdir / ("best" if which == "best" else "checkpoints")
  if which == "best" and not folder.is_dir():
    folder = workdir / "checkpoints"
  ckpt = Checkpointer(folder, max_to_keep=None, read_only=True)
  meta = ckpt.read_meta(step)
  if "config" not in meta or "model_name" not in meta:
    raise CheckpointError(f"{folder}: checkpoint metadata has no config; not written by genrec train")
  try:
    cfg = config_lib.from_dict(ExperimentConfig, meta["config"])
  except registry.UnknownModelError as e:
    raise registry.UnknownModelError(f"{workdir} holds a run of model {meta['model_name']!r}, which is not "
                                     f"registered in this process: {e}") from None
  mesh = mesh if mesh is not None else sharding.make_mesh(dataclasses.replace(MeshConfig(), rules=cfg.mesh.rules))
  placed = place(cfg, mesh, init=False)
  target = {"params": placed.params, "other": placed.other}
  if folder.name == "checkpoints":
    target = _full_target(placed)
  state = ckpt.restore(meta["step"], target)
  placed.params, placed.other = state["params"], state["other"]
  run = Run(workdir, cfg, meta, placed)
  if added_items:
    from genrec.train.add_items import apply_overlay

    apply_overlay(run)
  return run


def _full_target(placed: PlacedModel):
  """The trainer's full saved state (with optimizer) as a restore target."""
  from genrec.train import optim
  from genrec.train.trainer import _opt_shardings

  tx = optim.optimizer(placed.cfg.trainer)
  opt_sh = _opt_shardings(tx, placed.params, placed.param_shardings, placed.mesh)
  abstract_opt = jax.eval_shape(tx.init, placed.params)
  rep = sharding.replicated(placed.mesh)
  return {"params": placed.params, "other": placed.other, "opt": abstract_with(abstract_opt, opt_sh),
          "step": jax.ShapeDtypeStruct((), np.int32, sharding=rep)}


def evaluate_run(run: Run, *, eval_cfg=None, write: bool = True) -> dict:
  """Recomputes valid and test metrics from the checkpoint alone; updates DIR/results.json."""
  import json

  if run.added:
    raise ValueError(f"{run.workdir} is loaded with {len(run.added)} added items, which no test case can "
                     "target; evaluate the trained catalogue: genrec.load(DIR, added_items=False)")

  from genrec.train.tasks import get_task
  from genrec.train.trainer import write_results

  cfg = run.config if eval_cfg is None else dataclasses.replace(run.config, eval=eval_cfg)
  task = get_task(cfg, run.dataset())
  placed = dataclasses.replace(run.placed, cfg=cfg)
  evaluate = task.evaluator(placed)
  valid, _ = evaluate(placed.params, placed.other, "valid")
  test, groups = evaluate(placed.params, placed.other, "test")
  previous = {}
  path = run.workdir / "results.json"
  if path.exists():
    try:
      previous = json.loads(path.read_text())
    except json.JSONDecodeError:
      previous = {}
  results = {**previous, "model": cfg.model_name, "preset": cfg.preset,
             "protocol": task.protocol(), "valid": valid, "test": test,
             "groups": {"test": groups}, "evaluated_step": run.step}
  results.setdefault("steps", run.step)
  results.setdefault("train_seconds", None)
  if write:
    write_results(run.workdir, results)
  return results
