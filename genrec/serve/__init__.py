"""Serving a trained run: batch recommendations for many users, and a self-contained exported recommender."""
