"""Shared infrastructure: typed config, CLI adapters, checkpoints, logging, seeding."""
