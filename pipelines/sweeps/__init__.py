"""Hyperparameter sweep (book ch. 7.3.2): Hyperopt's TPE proposing trials, run by
Ray Tune (``HyperOptSearch``), each trial a Keras training run.

Flow: prepare the dataset once (Ray task, array to the object store) -> Tune trials
(:func:`dlpipe.tasks.sweep.trial.sweep_trial`) with the searcher's history -> a ``trials``
report row per trial as it ends, with live progress -> the best ``test_top_k``
configurations scored once on the test split -> plots.

The sweep directory is ``<output_dir>/<study>-sweep``. Running the same study again
resumes the stored sweep (Tune restores its trials and the searcher's history;
finished runs are found by key and not trained again) and ends with exactly
``num_trials`` trials. A larger ``num_trials`` (``--num-trials N``) extends a stored
sweep: every recorded trial keeps its number, run key and values, and the new trials
are proposed by a searcher that holds every earlier result (a new Tune experiment,
``tune-from-<first number>``, per extension). Only ``num_trials`` and
``time_budget_s`` may change on a stored sweep; any other change is an error naming
the changed fields: give the study a new name.

Ctrl-C or SIGTERM stops the sweep (see :mod:`dlpipe.pipelines.interrupt`): Tune ends
its loop and saves its state, the finished trials stay recorded, nothing is scored on
the test split (unless ``--score-partial``), and the command names the outstanding
trials and the command that resumes the sweep; exit code 130 / 143.

Under ``evaluation: kfold|iterated_kfold`` a trial trains its configuration once per
fold (parallel Ray tasks in the trial's placement group) and its objective is the fold
mean; the ``trials`` report records the fold scores, and the best K configurations are
scored on test through a final model on every non-test row (:mod:`.kfold`).

Every comparison of trials (Tune's ``mode``, the best trial, the top K, the summary's
order) takes its direction from :func:`dlpipe.metrics.get_metric` of the objective
(``val_loss``: lower is better).

Modules, in the order a sweep runs: :mod:`.stamp` (the sweep's identity and
fingerprint), :mod:`.searcher` (TPE on Tune), :mod:`.run` (the Tune loop and the test
scoring; :mod:`.kfold`: K-fold trials and their test scoring), :mod:`.recorder` (the
``trials`` rows), :mod:`.summary` (best trials, plots), :mod:`.command`
(``dlpipe sweep``). ``pipelines/sweep.py`` is the ``ray submit`` script.
"""
