"""Training: views (the branches), losses, LARS + schedule, the engine, the run (METHOD.md §3).

The shifts and the SimCLR augmentation, shared with evaluation, are in ``common``.
"""
