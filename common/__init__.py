"""Shared infrastructure: typed config, CLI adapters, checkpoints, logging, seeding, and the view
primitives training and evaluation both use (shifts, SimCLR augmentation, flips)."""
