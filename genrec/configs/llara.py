"""LLaRA-style presets: each item is its title plus one hybrid token (its projected MF embedding), with a
curriculum from text-only to hybrid prompts over the first `curriculum_steps` training steps."""
import dataclasses

from genrec.configs import collm
from genrec.config import ExperimentConfig
from genrec.models.llmrec import LLaRAConfig


def _llara(cfg: ExperimentConfig, curriculum_steps: int) -> ExperimentConfig:
  fields = {f.name: getattr(cfg.model, f.name) for f in dataclasses.fields(cfg.model)}
  return dataclasses.replace(cfg, model=LLaRAConfig(**fields, curriculum_steps=curriculum_steps),
                             model_name="llara")


def tiny() -> ExperimentConfig:
  return _llara(collm.tiny(), curriculum_steps=100)


def ml100k() -> ExperimentConfig:
  return _llara(collm.ml100k(), curriculum_steps=200)


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
