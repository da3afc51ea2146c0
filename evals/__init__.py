"""Evaluation: test-time features, the CSI score, metrics and the report.

    features = extract_features(model, loader, ...)          # evals.features
    scorer = CSIScorer("CSI").fit(train_features)             # evals.csi_score
    metrics = summarize(scorer.score(test_features), labels)  # evals.metrics
    write_report(out_dir, metrics=metrics, ...)               # evals.report

Import from the submodules; this package imports nothing, so importing it does no work.
"""
