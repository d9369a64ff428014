"""Stages: the runs a config depends on, resolved to run folders before its trainer starts.

A task says which runs it reads (`Task.stage_refs`, genrec.train.tasks): TIGER its tokenizer (`model.tokenizer`),
CoLLM its CF model (`model.cf_stage`), tokenizers and content retrievers the item encoder of
`data.item_embeddings=run:MODEL:PRESET`. A stage is an ordinary run of the one trainer, kept in
`$GENREC_CACHE/stages/<model>-<key>`, where the key hashes the stage's whole config and the folders of its own
stages: the same config is trained once and reused; a changed preset (or a changed stage below it) is a new stage.

  train(cfg, workdir)      trains (or reuses) every stage, depth first, then the run itself
  trainer(cfg, workdir)    the same up to a Trainer ready to run (for callers that drive it)
  locate(cfg)              finds the stages without training any: what evaluation, loading and add-items use;
                           a stage that is not there is a MissingStageError when the task asks for it
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from pathlib import Path

import genrec.families  # noqa: F401  (registers the family tasks)
from genrec import config as config_lib
from genrec import locks
from genrec.config import ConfigError, ExperimentConfig
from genrec.data import load_dataset
from genrec.files import cache_root, run_folder
from genrec.train.tasks import Missing, StageRef, Stages, checked_task_class, task_class
from genrec.train.trainer import Trainer

SEQUENCE_FIELDS = ("max_len", "train_window")  # how a run cuts sequences into rows: each stage's own


def stage_config(ref: StageRef, parent: ExperimentConfig) -> ExperimentConfig:
  """The config of stage `ref` of run `parent`: the preset with its overrides, and the data it trains on.

  data="catalogue" (tokenizers, CF models): the parent's data — same catalogue, filters, item embeddings, cold
  items and seed — with the preset's own SEQUENCE_FIELDS: a stage does not read the parent's history windows, so
  a TIGER run with another `data.max_len` reuses its tokenizer. data="own" (item encoders): the preset's data,
  with the parent's data folder and cold-start split (an encoder must not see held-out interactions)."""
  import genrec.configs

  cfg = config_lib.override(genrec.configs.get(ref.spec), list(ref.overrides))
  if ref.data == "catalogue":
    own = {name: getattr(cfg.data, name) for name in SEQUENCE_FIELDS}
    data = dataclasses.replace(parent.data, **own)
  else:
    data = cfg.data
    if parent.data.cold_items:
      data = dataclasses.replace(data, cold_items=parent.data.cold_items, seed=parent.data.seed)
    if parent.data.data_dir:
      data = dataclasses.replace(data, data_dir=parent.data.data_dir)
  return dataclasses.replace(cfg, data=data)


def stage_refs(cfg: ExperimentConfig, *, check: bool = True) -> dict[str, StageRef]:
  """The stages `cfg` reads, by role; with `check`, each named preset checked to leave the artifact the role
  reads (before anything trains)."""
  refs = checked_task_class(cfg).stage_refs(cfg)
  for role, ref in refs.items():
    if ref.spec and check:
      stage = stage_config(ref, cfg)
      exports = task_class(stage).exports
      if ref.artifact not in exports:
        raise ConfigError(
          f"{ref.setting}={ref.spec}: {stage.model_name} (task {stage.model.task!r}) leaves "
          f"{list(exports) or 'no artifact'}, not the {ref.artifact!r} this run's {role} stage "
          "must give; name a preset whose model does, or a finished run folder"
        )
  return refs


def stage_dir(cfg: ExperimentConfig) -> Path:
  """The cache folder of stage config `cfg`: its config and the folders of the stages it reads (a changed
  encoder preset gives new embeddings, so the tokenizer over them is a new stage, not a reuse of the old one)."""
  text = config_lib.to_json(cfg)
  for role, ref in sorted(stage_refs(cfg, check=False).items()):
    if ref.spec:
      text += "\n" + stage_dir(stage_config(ref, cfg)).name
  digest = hashlib.sha256(text.encode()).hexdigest()[:12]
  return cache_root() / "stages" / f"{cfg.model_name}-{digest}"


def _finished(folder: Path) -> bool:
  return (folder / "results.json").is_file()


def build_stage(stage: ExperimentConfig, *, data=None, progress: bool = True) -> Path:
  """Trains stage config `stage` (its own stages first) unless a finished run of it exists; returns its folder.
  progress=False (the dependent run's trainer.progress) silences its progress bars; it is not part of the key."""
  folder = stage_dir(stage)
  if _finished(folder):
    return folder
  # Runs started together (three seeds needing one tokenizer) build the stage once: the others wait here.
  with locks.hold(folder, f"stage {stage.model_name}:{stage.preset}"):
    if not _finished(folder):
      sub = resolve(stage, build=True, data=data, progress=progress)
      print(f"stage {stage.model_name}:{stage.preset} -> {folder}", file=sys.stderr)
      quiet = dataclasses.replace(stage.trainer, progress=stage.trainer.progress and progress)
      Trainer(dataclasses.replace(stage, trainer=quiet), folder, data=data, stages=sub).run()
  return folder


def resolve(cfg: ExperimentConfig, *, build: bool, data=None, progress: bool = True, who: str = "") -> Stages:
  """The stage folders of `cfg`. build=True trains the missing ones first (depth first); build=False only finds
  them, recording for each missing one where it was looked for. `data`: the parent's loaded dataset, shared
  with the stages trained on its catalogue. `who` names the run in messages."""
  who = who or f"{cfg.model_name}:{cfg.preset}"
  folders, missing = {}, {}
  for role, ref in stage_refs(cfg, check=build).items():
    if ref.folder:
      folders[role] = Path(ref.folder).expanduser()
      continue
    try:
      stage = stage_config(ref, cfg)
      folder = stage_dir(stage)
    except ConfigError as e:
      if build:
        raise
      missing[role] = Missing(ref.spec, who, reason=str(e))
      continue
    if build:
      build_stage(stage, data=data if ref.data == "catalogue" else None, progress=progress)
    if _finished(folder):
      folders[role] = folder
    else:
      missing[role] = Missing(ref.spec, who, folder=str(folder))
  return Stages(folders, missing)


def locate(cfg: ExperimentConfig, *, who: str = "") -> Stages:
  """The stage folders of a trained run's config, found, never trained."""
  return resolve(cfg, build=False, who=who)


def trainer(cfg: ExperimentConfig, workdir: str | Path, *, data=None, **kwargs) -> Trainer:
  """A Trainer for `cfg` in `workdir` with every stage it reads trained (or reused) first."""
  workdir = run_folder(workdir, "workdir")  # an unsupported URI is refused before a stage trains
  data = data if data is not None else load_dataset(cfg.data)
  stages = resolve(cfg, build=True, data=data, progress=cfg.trainer.progress)
  return Trainer(cfg, workdir, data=data, stages=stages, **kwargs)


def train(cfg: ExperimentConfig, workdir: str | Path, **kwargs) -> dict | None:
  """Trains `cfg` into `workdir` (stages first); the results, as Trainer.run returns them."""
  stop_at = kwargs.pop("stop_at", None)
  return trainer(cfg, workdir, **kwargs).run(stop_at=stop_at)
