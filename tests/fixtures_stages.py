"""Stage configs as a dependent run sees them, for tests of the pipeline's keys and reuse."""

from __future__ import annotations

import dataclasses

import genrec.configs
from genrec import pipeline
from genrec.config import DataConfig
from genrec.train.tasks import StageRef


def stage_config(spec: str, overrides, data_cfg: DataConfig, *, data: str = "catalogue"):
  """The config of stage `spec` (+ overrides) of a run whose data section is `data_cfg`."""
  parent = dataclasses.replace(genrec.configs.get("sasrec:tiny"), data=data_cfg)
  return pipeline.stage_config(StageRef(spec, tuple(overrides), data=data), parent)
