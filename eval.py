"""Evaluate a checkpoint with the CSI score. Accepts the paper's README command, e.g.

    python eval.py --mode ood_pre --dataset breastmnist --model resnet18 --ood_score CSI \
        --shift_trans_type rotation --print_score --ood_samples 10 --resize_factor 0.54 \
        --resize_fix --one_class_idx 1 --load_path logs/RUN/best.pt
"""
from common.cli import build_eval_parser, eval_config_from_args
from common.errors import exit_on_user_error


@exit_on_user_error
def main(argv=None) -> None:
    from evals.run import run_eval

    run_eval(eval_config_from_args(build_eval_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
