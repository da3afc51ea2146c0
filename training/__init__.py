"""Training: shifts, SimCLR augmentation, views, losses, LARS + schedule, the engine (METHOD.md §3)."""
