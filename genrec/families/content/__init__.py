"""The content family: item content vectors (text towers, fixed tables, encoder runs), the multimodal item
encoder's contrastive task, tuned towers, the content retriever's task and the embeddings export."""
