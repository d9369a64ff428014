"""`genrec.load(dir)`: a trained model back from its run folder, with nothing else as input; and the other
things a user does with a finished run (evaluate it, add items to it)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from genrec import config as config_lib
from genrec import hub, pipeline
from genrec.errors import ConfigError
from genrec.families import add_items as add_items_lib
from genrec.models import protocols
from genrec.train.logging import log_results
from genrec.train.restore import Restored, restore
from genrec.train.tasks import get_task
from genrec.train.trainer import write_results


@dataclasses.dataclass
class Run(Restored):
  """A loaded run: `model` (eval mode, parameters on `placed.mesh`), its `config`, checkpoint `meta`, and the
  items `genrec add-items` added (`added`: [{"item", "title", "text"}], ids num_items+1.. in order)."""

  added: list = dataclasses.field(default_factory=list)
  data: str | None = None  # a data.dataset the caller chose (--data), read instead of the one the run names
  _datasets: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # read once per run

  def dataset(self):
    """The run's data. A run folder may come from elsewhere: the `atomic:PATH` its config names is read only
    when PATH is relative and stays inside the current folder; any other is read when the caller names it."""
    from genrec.data import load_dataset

    spec = self.data if self.data is not None else self.config.data.dataset
    if self.data is None and spec.startswith("atomic:"):
      path = Path(spec[len("atomic:") :]).expanduser()
      here = Path.cwd().resolve()
      if path.is_absolute() or not (here / path).resolve().is_relative_to(here):
        raise ConfigError(
          f"{self.workdir}: its config reads data.dataset={spec!r}, outside the current folder; a run folder "
          f"does not choose files outside it: to read them, name them yourself with --data {spec} "
          "(genrec.load(..., data=...))"
        )
    if spec not in self._datasets:  # recommend() is called per user: read and prepare the files once
      self._datasets[spec] = load_dataset(dataclasses.replace(self.config.data, dataset=spec))
    return self._datasets[spec]

  def recommend(self, user: str, k: int = 10) -> list[dict]:
    """Top-k items for a source-file user id after their whole history, never an item they have seen:
    [{"item": raw id, "title", "score"}]. The search is compiled once per k and kept on the run (the same one
    `recommend_all` batches), so a loop over users pays for the search only."""
    from genrec.serve import batch as batch_lib

    if not protocols.provides(self.model, protocols.Recommender):
      raise ValueError(
        f"{self.config.model_name} is a pointwise model: it predicts P(like) for a (user, item) "
        "pair and does not rank the catalogue; `genrec eval` reports its AUC/UAUC"
      )
    data = self.dataset()
    u = data.user_index(str(user))
    seq = data.sequences[u]
    unseen = data.num_items + len(self.added) - len(set(seq.tolist()))
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
      raise TypeError(f"k must be a whole number of items, got {k!r}")
    k = int(k)
    if k < 1 or k > unseen:
      raise ValueError(f"k must be between 1 and the {unseen} items user {user} has not seen, got {k}")
    ids, scores = batch_lib.search_one(self, u, k)
    raw = data.item_raw + [a["item"] for a in self.added]
    titles = data.item_titles + [a["title"] for a in self.added]
    return [{"item": raw[i], "title": titles[i], "score": float(s)} for i, s in zip(ids, scores) if i > 0]

  def recommend_all(
    self, users: list[str] | None = None, k: int = 10, *, batch_size: int = 256, progress: bool = False
  ) -> list[dict]:
    """Top-k unseen items for many users (source-file ids; None: every user), in jitted fixed-size batches
    split over the mesh's data axes: [{"user", "items": [raw ids], "scores"}], best first, in `users`' order
    (each row what `recommend` gives that user)."""
    from genrec.serve import batch as batch_lib

    data = self.dataset()
    index = np.arange(data.num_users) if users is None else np.array([data.user_index(str(u)) for u in users])
    return list(batch_lib.recommend_rows(self, index, k, batch_size=batch_size, progress=progress))


def load(
  workdir: str | Path,
  *,
  which: str = "best",
  step: int | None = None,
  mesh=None,
  added_items: bool = True,
  allow_unverified: bool = False,
  data: str | None = None,
) -> Run:
  """Loads a run folder written by `genrec train` or `genrec publish` (with the items `genrec add-items` added,
  unless added_items=False: then the catalogue it was trained on). `workdir` may be a URI of a published run:
  https://HOST/PATH, hf://ORG/NAME[@REVISION] or gs://BUCKET/PATH, fetched once into $GENREC_CACHE/hub/ and
  checked against its sha256 manifest before anything is read (genrec.hub).

  which: "best" (the kept model by validation metric) or "latest" (the last training checkpoint).
  mesh: where to place the parameters (default: every local device on the data axis, parameters
    sharded by the run's own rules — any mesh works, the checkpoint is resharded on restore).
  allow_unverified: load a checkpoint that has no manifest (its files cannot be checked); refused by default.
  data: the data.dataset to read (recommend, evaluate) instead of the one the run's config names; needed when
    that one is an absolute path or leads outside the current folder (a run folder cannot steer reads).
  """
  restored = restore(workdir, which=which, step=step, mesh=mesh, allow_unverified=allow_unverified)
  run = Run(**{f.name: getattr(restored, f.name) for f in dataclasses.fields(Restored)}, data=data)
  if added_items:
    add_items_lib.apply_overlay(run)
  return run


def stages_of(run: Run):
  """The stage folders `run` was trained with, found in this cache (never trained)."""
  return pipeline.locate(run.config, who=str(run.workdir))


def evaluate_run(run: Run, *, eval_cfg=None, write: bool = True) -> dict:
  """Recomputes valid and test metrics from the checkpoint alone. write: update DIR/results.json and log them to
  DIR/tensorboard/eval (at the evaluated step), unless the run is a published folder (`is_published`)."""
  if run.added:
    raise ValueError(
      f"{run.workdir} is loaded with {len(run.added)} added items, which no test case can "
      "target; evaluate the trained catalogue: genrec.load(DIR, added_items=False)"
    )

  cfg = run.config if eval_cfg is None else dataclasses.replace(run.config, eval=eval_cfg)
  task = get_task(cfg, run.dataset(), stages_of(run))
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
  results = {
    **previous,
    "model": cfg.model_name,
    "preset": cfg.preset,
    "protocol": task.protocol(),
    "valid": valid,
    "test": test,
    "groups": {"test": groups},
    "evaluated_step": run.step,
  }
  results.setdefault("steps", run.step)
  results.setdefault("train_seconds", None)
  if write:
    saved, message = record_eval(run, cfg, results)
    if not saved:
      print(f"genrec: {message}", file=sys.stderr)
  return results


def record_eval(run: Run, cfg, results: dict) -> tuple[bool, str]:
  """Writes what `evaluate_run` computed to DIR/results.json and DIR/tensorboard/eval, unless the run is a
  published folder; returns (saved, what happened, for the user). A folder it cannot write to (read-only,
  someone else's) keeps its old files, and the message says the metrics were not saved."""
  if is_published(run):
    return False, f"{run.workdir} is a published run: its results.json and TensorBoard stay as published"
  try:
    write_results(run.workdir, results)
    log_results(run.workdir, config_lib.to_dict(cfg), results, name="eval", step=run.step)
  except OSError as e:
    return False, (
      f"cannot write to {run.workdir} ({e.strerror or e}): the metrics were not saved there; copy the run to a "
      "folder you can write to, or keep the printed table"
    )
  return True, f"updated {run.workdir / 'results.json'}; TensorBoard: {run.workdir / 'tensorboard' / 'eval'}"


def is_published(run: Run) -> bool:
  """A folder written by `genrec publish` (or fetched from a URI into the hub cache): it stays as its manifest
  says, so evaluating it writes neither results.json nor TensorBoard events there."""
  return (run.workdir / hub.MANIFEST).is_file()


def add_items(workdir: str | Path, csv_path: str | Path, *, progress: bool = False) -> dict:
  """`genrec add-items`: new items for a trained run, encoded by its content and tokenizer stages, as the
  next revision of its overlay (genrec.families.add_items)."""
  run = load(workdir)
  return add_items_lib.add_items(run, csv_path, stages_of(run), progress=progress)
