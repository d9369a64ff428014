"""The one sharded training loop, evaluation, checkpoints and logging."""
