"""``train.py ARGS`` then ``eval.py ARGS`` in one interpreter (scripts/gpu/gpu_paper.py's unit of work).

    python scripts/gpu/train_eval.py TRAIN_FLAGS... -- EVAL_FLAGS...

The same flags, parsers and code paths as the two entry points; one process start instead of two
(imports cost seconds per process, and the GPU command runs a dozen of these).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.cli import build_eval_parser, build_train_parser, config_from_eval_args, train_config_from_args  # noqa: E402,E501
from common.config import EvalConfig  # noqa: E402
from common.errors import UserError, exit_on_user_error  # noqa: E402


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        raise UserError("usage: train_eval.py TRAIN_FLAGS... -- EVAL_FLAGS...")
    cut = argv.index("--")
    train_cfg = train_config_from_args(build_train_parser().parse_args(argv[:cut]))
    eval_cfg = config_from_eval_args(build_eval_parser().parse_args(argv[cut + 1:]))
    if not isinstance(eval_cfg, EvalConfig):
        raise UserError("train_eval.py runs eval.py --mode ood_pre only")
    from evals.run import run_eval
    from training.run import run_training

    print(f"done: {run_training(train_cfg)}/best.pt", flush=True)
    run_eval(eval_cfg)


if __name__ == "__main__":
    main()
