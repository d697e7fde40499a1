"""Hyperopt's TPE as Ray Tune's searcher, warm-started with earlier results and with
conditional-branch warm starts."""

from __future__ import annotations


def searcher_class():
    import hyperopt
    from ray.tune.search.hyperopt import HyperOptSearch

    class ConditionalHyperOptSearch(HyperOptSearch):
        """``HyperOptSearch`` whose warm-start points may leave out the labels of
        inactive conditional branches (Hyperopt's TPE expects every label in every
        trial's ``misc``, empty when inactive), and which starts with a history.

        Args:
            history: ``[(point, value)]``: configurations already evaluated (Hyperopt
                label values, as for ``points_to_evaluate``) and their objective
                values; they enter Hyperopt's trials as finished (TPE models them,
                they are not proposed again). Ray's ``HyperOptSearch`` has no
                ``evaluated_rewards``.
            points_to_evaluate: warm-start points, proposed first, in order.
        """

        def __init__(self, *args, history=(), points_to_evaluate=None, **kwargs):
            self._history = list(history)
            self._n_warm = len(points_to_evaluate or [])
            # HyperOptSearch reverses the list and proposes from its end: history
            # first here puts the warm starts first in line (see _setup_hyperopt)
            points = [p for p, _ in self._history] + list(points_to_evaluate or [])
            super().__init__(*args, points_to_evaluate=points or None, **kwargs)

        def _setup_hyperopt(self) -> None:
            super()._setup_hyperopt()
            labels = list(self.domain.params)
            docs = self._hpopt_trials._dynamic_trials
            for doc in docs:
                for key in ("idxs", "vals"):
                    for label in labels:
                        doc["misc"][key].setdefault(label, [])
            # docs = reversed(warm) + reversed(history): mark the history done
            for doc, (_, value) in zip(docs[self._n_warm :], reversed(self._history)):
                doc["state"] = hyperopt.JOB_STATE_DONE
                doc["result"] = {
                    "loss": self.metric_op * float(value),
                    "status": hyperopt.STATUS_OK,
                }
            self._points_to_evaluate = self._n_warm
            self._hpopt_trials.refresh()

    return ConditionalHyperOptSearch
