"""TALLRec presets: a decoder LLM with LoRA answers Yes/No to a text-only prompt of liked titles."""

from genrec.config import DataConfig, EvalConfig, ExperimentConfig, TrainerConfig
from genrec.models.layers.lora import LoRAConfig
from genrec.models.llm import LLMConfig
from genrec.models.llmrec import TALLRecConfig

# A random LLM knows no words: adapters on the MLPs too, or it can hardly learn anything on the tiny LLM.
TINY_LORA = LoRAConfig(rank=8, alpha=16.0, targets=("q", "k", "v", "o", "gate", "up", "down"))


def trainer(steps: int, batch_size: int, learning_rate: float, eval_every: int) -> TrainerConfig:
  """The LLM-CF presets' optimizer: AdamW on the adapters (and projector), AUC picks the kept model."""
  return TrainerConfig(
    steps=steps,
    batch_size=batch_size,
    learning_rate=learning_rate,
    warmup_steps=20,
    eval_every=eval_every,
    checkpoint_every=steps,
    log_every=25,
    best_metric="auc",
    best_mode="max",
    clip_norm=1.0,
  )


def tiny() -> ExperimentConfig:
  """Seconds on a CPU: planted pointwise clusters (titles "item <id>" say nothing), a random 2-layer LLM,
  the last 5 liked items in the prompt."""
  return ExperimentConfig(
    model=TALLRecConfig(llm=LLMConfig.tiny(), lora=TINY_LORA, max_prompt_len=48),
    model_name="tallrec",
    preset="tiny",
    data=DataConfig(dataset="synthetic", max_len=5),
    trainer=trainer(steps=100, batch_size=64, learning_rate=5e-3, eval_every=50),
    eval=EvalConfig(split="temporal", batch_size=512),
  )


def ml100k() -> ExperimentConfig:
  """MovieLens-100k under CoLLM's protocol (rating > 3, global time split 80/10/10) with the tiny random LLM;
  `--set model.llm_path=/path/to/qwen2-0.5b` for a real one."""
  return ExperimentConfig(
    model=TALLRecConfig(llm=LLMConfig.tiny(), lora=TINY_LORA, max_prompt_len=96, max_title_tokens=12),
    model_name="tallrec",
    preset="ml100k",
    data=DataConfig(dataset="ml-100k", max_len=10),
    trainer=trainer(steps=400, batch_size=64, learning_rate=5e-3, eval_every=200),
    eval=EvalConfig(split="temporal", batch_size=512),
  )


default = ml100k
PRESETS = {"tiny": tiny, "ml100k": ml100k, "default": ml100k}
