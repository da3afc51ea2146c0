"""Train CSI or DIA. Accepts the paper's README command verbatim, e.g.

    python train.py --data_root DATA --dataset breastmnist --model resnet18 --mode simclr_DIA \
        --shift_trans_type diffusion_rotation --diff_resolution 32 --batch_size 32 \
        --one_class_idx 1 --save_step 1 --diffusion_model_path runs/ddpm_breast
"""
import os

from common.cli import build_train_parser, train_config_from_args
from common.errors import exit_on_user_error


@exit_on_user_error
def main(argv=None) -> None:
    from training.run import run_training

    cfg = train_config_from_args(build_train_parser().parse_args(argv))
    logdir = run_training(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 speaks
        print(f"done: {logdir}/best.pt (chosen on validation) and {logdir}/last.pt")


if __name__ == "__main__":
    main()
