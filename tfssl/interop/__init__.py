"""Readers of released checkpoints in other frameworks' layouts and their conversion to tfssl modules."""
