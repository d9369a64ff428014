"""CoLLM presets: TALLRec's prompt plus user/item placeholders that carry projected MF embeddings.

Two-stage training as in the paper: `--set model.stage=text` (LoRA on text-only prompts), then
`--set model.stage=cf --init-from STAGE1_RUN` (the projector, LoRA frozen); the default trains both at once.
"""

import dataclasses

from genrec.config import DataConfig, EvalConfig, ExperimentConfig
from genrec.configs.tallrec import TINY_LORA, trainer
from genrec.models.llm import LLMConfig
from genrec.models.llmrec import CoLLMConfig


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: planted clusters; the CF embeddings come from an mf:tiny stage trained first."""
  return ExperimentConfig(
    model=CoLLMConfig(llm=LLMConfig.tiny(), lora=TINY_LORA, max_prompt_len=48, cf_stage="mf:tiny", cf_dim=16),
    model_name="collm",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=5),
    trainer=trainer(steps=100, batch_size=64, learning_rate=5e-3, eval_every=50),
    eval=EvalConfig(split="temporal", batch_size=512),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k (rating > 3, global time split 80/10/10), tiny random LLM, CF from an mf:ml100k stage;
  `--set model.llm_path=/path/to/qwen2-0.5b` for a real LLM, `model.cf_run=RUN` for a CF run of your own."""
  cfg = tiny()
  return dataclasses.replace(
    cfg,
    preset="ml100k",
    model=dataclasses.replace(cfg.model, max_prompt_len=112, max_title_tokens=12, cf_stage="mf:ml100k", cf_dim=64),
    data=DataConfig(dataset="ml-100k", max_len=10),
    trainer=trainer(steps=400, batch_size=64, learning_rate=5e-3, eval_every=200),
    eval=EvalConfig(split="temporal", batch_size=512),
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
