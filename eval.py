"""Evaluate a checkpoint with the CSI score, or flag anomalous images with it. Accepts the paper's
README command, e.g.

    python eval.py --mode ood_pre --dataset breastmnist --model resnet18 --ood_score CSI \
        --shift_trans_type rotation --print_score --ood_samples 10 --resize_factor 0.54 \
        --resize_fix --one_class_idx 1 --load_path logs/RUN/best.pt

``ood_pre`` also calibrates a threshold on the validation split and stores it next to the
checkpoint; then ``python eval.py --mode predict --load_path logs/RUN/best.pt --input DIR``
writes predictions.csv for any images.
"""
from common.cli import build_eval_parser, config_from_eval_args
from common.config import EvalConfig, PredictConfig
from common.errors import exit_on_user_error


def _run_eval(cfg: EvalConfig) -> None:
    from evals.run import run_eval  # deferred: importing the entry point does no work

    run_eval(cfg)


def _run_predict(cfg: PredictConfig) -> None:
    from evals.predict import run_predict

    run_predict(cfg)


RUNNERS = {EvalConfig: _run_eval, PredictConfig: _run_predict}


@exit_on_user_error
def main(argv=None) -> None:
    cfg = config_from_eval_args(build_eval_parser().parse_args(argv))
    RUNNERS[type(cfg)](cfg)


if __name__ == "__main__":
    main()
