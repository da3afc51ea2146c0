"""DDPM pretraining and the dissolving transforms of DIA (docs/method.md, "DDPM and the dissolver").

Import from the submodules: ``dissolver`` (Dissolver, predict_x0), ``blur``
(BlurDissolver), ``checkpoint`` (save_ddpm, load_ddpm), ``trainer`` and
``visualize`` (the two modes of ``train_eval_ddpm.py``).
"""
