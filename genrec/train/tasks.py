"""Tasks: what the trainer feeds a model and how it validates it, named by the model config's `task` field.

The engine's own task is `next_item` (genrec.train.next_item). The model families register theirs with
`@register_task` when their modules are imported (genrec.families: `semantic_id_retrieval`, `item_embeddings`,
`content_retrieval`, `item_contrastive`, `pointwise`, `prompted`); a task defined outside genrec registers the
same way from a module named by `--import`.

The trainer only talks to a Task (the base class below): `configure()` (training only: the config with its
data-dependent fields filled), `train_dataset(...)` (a grain MapDataset whose [step] is the batch of that step),
`evaluator(placed)` → fn(params, other, split) → (summary, groups), `protocol()`, `prepare(placed, key)` (before
the optimizer is built, fresh runs only) and `finish(trainer, params, other)` (after training; extra results).
What a task needs from a model is written down as protocols (`requires`, genrec.models.protocols) and checked
before anything is built. A task that reads other runs says which (`stages(cfg)`); genrec.pipeline resolves
them to run folders before the trainer starts and hands them over as `Stages`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from genrec import registry
from genrec.config import ConfigError, DataConfig, ExperimentConfig
from genrec.data import splits
from genrec.errors import MissingStageError
from genrec.models import protocols


@dataclasses.dataclass(frozen=True)
class StageRef:
  """A run a config depends on: the preset `spec` (with `overrides`) trained as a stage, or a finished run
  `folder`. `artifact` is what the dependent reads from it; `data` says whose data the stage trains on:
  "catalogue" (the dependent's, keeping the stage preset's own history fields: same catalogue) or "own" (the
  stage preset's, with the dependent's data folder and cold-start split). `setting` names the config key."""

  spec: str = ""
  overrides: tuple[str, ...] = ()
  folder: str = ""
  artifact: str = ""
  data: str = "catalogue"
  setting: str = ""


def item_embeddings_stage(data_cfg: DataConfig) -> dict[str, StageRef]:
  """The item-encoder stage behind `data.item_embeddings=run:MODEL:PRESET` (or the run folder of run:DIR)."""
  source = data_cfg.item_embeddings
  if not source.startswith("run:"):
    return {}
  spec = source[4:]
  folder = Path(spec).expanduser()
  setting = "data.item_embeddings"
  if folder.is_dir():
    return {"item_embeddings": StageRef(folder=str(folder), artifact="item_embeddings", setting=setting)}
  return {"item_embeddings": StageRef(spec, artifact="item_embeddings", data="own", setting=setting)}


@dataclasses.dataclass(frozen=True)
class Missing:
  """Why a stage is not at hand: where it was looked for (`folder`), or why it could not be (`reason`)."""

  spec: str
  who: str
  folder: str = ""
  reason: str = ""


class Stages:
  """The run folders of the stages a run depends on, by role ("tokenizer", "item_embeddings", "cf"). A role
  that was not resolved to a finished run is a MissingStageError when asked for, saying where it was looked for
  (`missing[role]`) and what to do (`advice`)."""

  ADVICE = (
    "evaluation and loading never train a stage: the genrec train command of this run builds it (or set "
    "GENREC_CACHE to the cache it was trained in)"
  )

  def __init__(self, folders: dict[str, Path] | None = None, missing: dict[str, Missing] | None = None):
    self.folders = dict(folders or {})
    self.missing = dict(missing or {})

  def folder(self, role: str, *, advice: str = "") -> Path:
    if role in self.folders:
      return self.folders[role]
    m = self.missing.get(role)
    if m is not None and m.reason:
      raise MissingStageError(f"the {role} stage {m.spec} of {m.who} cannot be located ({m.reason})")
    if m is not None:
      raise MissingStageError(f"the {role} stage {m.spec} of {m.who} is not in {m.folder}; {advice or self.ADVICE}")
    raise MissingStageError(
      f"this run reads its {role} stage, which was not resolved to a run folder: train through genrec train "
      "(or genrec.pipeline.train), which trains or reuses the stages a config depends on first"
    )

  def __contains__(self, role: str) -> bool:
    return role in self.folders

  def __repr__(self) -> str:
    return f"Stages({self.folders}, missing={sorted(self.missing)})"


class Task:
  """Base of every task. Subclasses set `requires` (model protocols) and override what differs."""

  requires: tuple[type, ...] = (protocols.Trainable,)
  config_requires: tuple[type, ...] = ()
  exports: tuple[str, ...] = ()  # artifact names a finished run of this task leaves for other runs
  # The eval.split values it computes (genrec.data.splits.SPLITS); None: its evaluation has no such split.
  splits: tuple[str, ...] | None = ("leave_one_out",)
  name = ""  # set by register_task

  def __init__(self, cfg: ExperimentConfig, data, stages: Stages | None = None):
    self.cfg, self.data = cfg, data
    self.stages = stages if stages is not None else Stages()

  @classmethod
  def stage_refs(cls, cfg: ExperimentConfig) -> dict[str, StageRef]:
    """The runs a config of this task reads, by role (none by default)."""
    del cfg
    return {}

  @property
  def view(self):
    """What the model config's resolve() sees (the dataset by default)."""
    return self.data

  def configure(self) -> ExperimentConfig:
    """The config with its data-dependent model fields filled, so that the saved config stands alone. Called
    when training starts (it may read stages); evaluation and loading use the saved config as it is."""
    cfg = self.cfg
    if protocols.provides(cfg.model, protocols.Resolvable):
      cfg = dataclasses.replace(cfg, model=cfg.model.resolve(self.view, cfg.data))
    return cfg

  def train_dataset(self, *, process_index: int, process_count: int):
    raise NotImplementedError

  def evaluator(self, placed):
    raise NotImplementedError

  def protocol(self) -> dict:
    raise NotImplementedError

  def prepare(self, placed, key) -> None:
    """Puts what training starts from into a freshly placed model (tables, pretrained weights, k-means)."""
    del placed, key

  def finish(self, trainer, params, other) -> dict:
    """After training: writes the run's artifacts; returns what results.json records of them."""
    del trainer, params, other
    return {}


_TASKS: dict[str, type[Task]] = {}


def register_task(name: str):
  """Class decorator: `@register_task("pointwise")` on a Task subclass."""

  def wrap(cls):
    prev = _TASKS.get(name)
    if prev is not None and prev.__qualname__ != cls.__qualname__:
      raise ValueError(f"task {name!r} is already registered to {prev.__module__}.{prev.__qualname__}")
    cls.name = name
    _TASKS[name] = cls
    return cls

  return wrap


def task_name(cfg: ExperimentConfig) -> str:
  name = getattr(cfg.model, "task", None)
  if not isinstance(name, str) or not name:
    raise ConfigError(
      f"the config of model {cfg.model_name!r} ({type(cfg.model).__name__}) has no `task` field; "
      'add one naming its task, e.g. `task: str = "next_item"`'
    )
  return name


def task_class(cfg: ExperimentConfig) -> type[Task]:
  name = task_name(cfg)
  if name not in _TASKS:
    raise ConfigError(
      f"model {cfg.model_name!r} needs task {name!r}, which is not registered in this process; "
      f"registered tasks: {sorted(_TASKS)}. genrec's family tasks register when genrec.families is "
      "imported (genrec.pipeline, genrec.load and the command line do); a task defined outside "
      "genrec needs --import MODULE"
    )
  return _TASKS[name]


def checked_task_class(cfg: ExperimentConfig) -> type[Task]:
  """The task class of `cfg`, after checking that its model (and config) provide what the task calls."""
  cls = task_class(cfg)
  what = f"model {cfg.model_name!r} (task {cls.name!r})"
  protocols.require(registry.model_class(cfg.model_name), cls.requires, what)
  protocols.require(cfg.model, cls.config_requires, f"the config of {what}")
  if cls.splits is not None:  # a results table must never be labelled with a split that was not computed
    splits.check(cfg.eval)
    if cfg.eval.split not in cls.splits:
      raise ConfigError(f"eval.split={cfg.eval.split!r} is not implemented for {what}; it evaluates {list(cls.splits)}")
  return cls


def get_task(cfg: ExperimentConfig, data, stages: Stages | None = None) -> Task:
  return checked_task_class(cfg)(cfg, data, stages)


def list_tasks() -> list[str]:
  return sorted(_TASKS)
