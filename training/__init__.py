"""Training: views (the branches), losses, LARS + schedule, the engine, the run.

The shifts and the SimCLR augmentation, shared with evaluation, are in ``common``.
"""
