"""The ensemble stage (issue 4): weighted ensembles over the stored predictions of a study.

Flow, all plain functions (no Ray; they run in the driver in seconds)::

    members.load_member_predictions(run_dirs)   reports/{runs,predictions}
                                                -> MemberPredictions
    oof.load_kfold_members(run_dirs, fit=...)   K-fold studies: out-of-fold (or fold 0)
                                                validation, final models' test
    build.build_ensembles(members)              cross-fit on validation, refit, test
                                                once -> rows
    report.write_ensemble_report(run_dir, ...)  reports/ensembles/part-<id>.parquet
                                                + plots/ensemble_weights.png

The estimators themselves (best single member, averages, greedy selection) are in
`dlpipe.ensembles`.
"""
