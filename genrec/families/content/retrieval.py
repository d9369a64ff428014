"""The task of retrievers over frozen item content ("content_retrieval", ContentRec): next-item training and
ranking as in the engine's next_item task, plus the item content table. When training starts the table of
`data.item_embeddings` (genrec.families.content.sources; an encoder stage for run:MODEL:PRESET) sizes the
model (`with_item_content`) and is loaded into it with which items training sees (`set_item_content`); it is
checkpointed with the model, so evaluation and loading never read the content source again.
"""

from __future__ import annotations

import dataclasses
import functools

from genrec.config import ExperimentConfig
from genrec.families.content import sources
from genrec.models import protocols
from genrec.train.next_item import NextItemTask
from genrec.train.tasks import item_embeddings_stage, register_task


@register_task("content_retrieval")
class ContentRetrievalTask(NextItemTask):
  requires = (protocols.Trainable, protocols.ContentRetriever)
  config_requires = (protocols.ContentConfig,)

  @classmethod
  def stage_refs(cls, cfg: ExperimentConfig):
    return item_embeddings_stage(cfg.data)

  @functools.cached_property
  def content(self):
    return sources.item_embeddings(self.data, self.cfg.data, self.stages, progress=self.cfg.trainer.progress)

  def configure(self) -> ExperimentConfig:
    self.cfg = dataclasses.replace(self.cfg, model=self.cfg.model.with_item_content(self.content))
    return super().configure()

  def prepare(self, placed, key) -> None:
    del key
    self.put_tables(placed, lambda model, trained: model.set_item_content(self.content, trained))
