"""Print the demo's closing summary from its report.json."""
import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seconds", type=int, default=0)
    args = p.parse_args()
    report = json.loads((args.out / "eval" / "report.json").read_text())
    m = report["metrics"]
    print("\n== DIA demo: done in {:.1f} min ==".format(args.seconds / 60))
    print(f"Test AUROC {m['auroc']:.3f} (95% bootstrap CI {m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f}), "
          f"AUPR {m['aupr']:.3f}, FPR@95%TPR {m['fpr95']:.3f} on {m['n_normal']} normal / "
          f"{m['n_anomalous']} anomalous BreastMNIST test images.")
    print(f"Report and plots:  {args.out / 'eval'} (report.json, roc.png, scores_hist.png, scores.csv)")
    grids = sorted(p.name for p in (args.out / "ddpm_eval").glob("dissolve_*.png"))
    if grids:
        print(f"Dissolving grids:  {args.out / 'ddpm_eval'} ({', '.join(grids)})")
    print(f"Training logs:     tensorboard --logdir {args.out / 'dia'}")
    print("Your own data:     see README 'Use on your own data' (--dataset folder --data_root DIR).")


if __name__ == "__main__":
    main()
