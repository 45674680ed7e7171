"""Test helpers that ship with the package: tiny seeded checkpoints, generated locally (needs torch)."""

from .tiny import init_random_, make_tiny_checkpoint, make_tiny_model, tiny_config

__all__ = ["init_random_", "make_tiny_checkpoint", "make_tiny_model", "tiny_config"]
