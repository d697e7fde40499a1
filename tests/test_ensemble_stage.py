"""The ensemble stage (issue 4): run directories -> aligned members -> ensembles report.

Self-contained and fast: run directories are written in tmp_path with
`reports.write_part` (no training, no Ray).
"""

import dataclasses
import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from dlpipe.ensembles import WeightedAverage
from dlpipe.pipelines import cli
from dlpipe.pipelines.config import ConfigError, EnsembleSpec, load_study
from dlpipe.pipelines.ensemble import run_ensemble, run_ensemble_stage
from dlpipe.tasks.ensembling.build import build_ensembles
from dlpipe.tasks.ensembling.members import load_member_predictions
from dlpipe.tasks.ensembling.report import write_ensemble_report
from dlpipe.tasks.reports import tables as reports

N_VAL, N_TEST = 120, 80
VAL_START, TEST_START = 1000, 2000
METHODS = [
    "best_single",
    "simple_average",
    "weighted_nelder_mead",
    "weighted_slsqp",
    "greedy_selection",
]


def _targets(n, phase=0.0):
    index = np.arange(n)
    return 10.0 + 5.0 * np.sin(index / 7.0 + phase)


def _known_members(n, phase=0.0):
    """y + 1, y - 3, y + z (z non-constant): singles MAE 1, 3, ~1.27; the simplex
    optimum (0.75, 0.25, 0) has MAE 0, far below the best single's 1."""
    y = _targets(n, phase)
    z = 2.0 * np.sin(np.arange(n) * 1.3 + 0.1 + phase)
    return np.stack([y + 1.0, y - 3.0, y + z]), y


def write_run(
    run_dir,
    run_id,
    family,
    val,
    test,
    *,
    val_ids=None,
    test_ids=None,
    val_y=None,
    test_y=None,
    status="ok",
    seed=0,
):
    """One member: a `runs` row and its `predictions` rows, rows written shuffled."""
    val_ids = np.arange(VAL_START, VAL_START + len(val)) if val_ids is None else val_ids
    test_ids = np.arange(TEST_START, TEST_START + len(test)) if test_ids is None else test_ids
    val_y = _targets(len(val)) if val_y is None else val_y
    test_y = _targets(len(test), 1.0) if test_y is None else test_y
    rows = [
        {"run_id": run_id, "split": split, "sample_index": int(i), "prediction": p, "target": y}
        for split, ids, preds, ys in (
            ("validation", val_ids, val, val_y),
            ("test", test_ids, test, test_y),
        )
        for i, p, y in zip(ids, preds, ys)
    ]
    order = np.random.default_rng(seed).permutation(len(rows))  # row order is not the key
    reports.write_part(run_dir, "predictions", run_id, [rows[k] for k in order])
    reports.write_part(
        run_dir,
        "runs",
        run_id,
        [
            {
                "run_id": run_id,
                "family": family,
                "status": status,
                "val_mae_units": float(np.mean(np.abs(np.asarray(val) - val_y))),
            }
        ],
    )


def write_baseline(run_dir):
    reports.write_part(
        run_dir,
        "runs",
        "baseline-x",
        [{"run_id": "baseline-x", "family": "baseline", "status": "ok", "val_mae_units": 2.0}],
    )


@pytest.fixture
def study_dir(tmp_path):
    """A run directory with 3 known members, a baseline and a failed run."""
    run_dir = tmp_path / "study"
    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    for j, family in enumerate(["gru", "lstm", "conv1d"]):
        write_run(run_dir, f"{family}-{j}", family, val[j], test[j], seed=j)
    write_baseline(run_dir)
    reports.write_part(
        run_dir,
        "runs",
        "dense-bad",
        [{"run_id": "dense-bad", "family": "dense", "status": "failed", "error": "diverged"}],
    )
    return run_dir


# ---------------------------------------------------------------------------------
# Loading and alignment by sample_index
# ---------------------------------------------------------------------------------


def test_members_align_by_sample_index_whatever_the_row_order(study_dir):
    members = load_member_predictions([study_dir])
    val, y_val = _known_members(N_VAL)
    test, y_test = _known_members(N_TEST, 1.0)
    assert members.run_ids == ("conv1d-2", "gru-0", "lstm-1")  # sorted by run id
    assert members.families == ("conv1d", "gru", "lstm")
    order = [2, 0, 1]
    np.testing.assert_array_equal(members.val_predictions, val[order])
    np.testing.assert_array_equal(members.test_predictions, test[order])
    np.testing.assert_array_equal(members.val_targets, y_val)
    np.testing.assert_array_equal(members.test_targets, y_test)
    np.testing.assert_array_equal(members.val_sample_index, np.arange(VAL_START, VAL_START + N_VAL))
    assert members.val_predictions.shape == (3, N_VAL)
    assert members.skipped == {"dense-bad": "status failed"}  # baseline: not listed
    assert members.dropped_samples == {"validation": 0, "test": 0}


def test_members_of_several_run_directories_combine(tmp_path):
    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    write_run(tmp_path / "a", "gru-0", "gru", val[0], test[0])
    write_run(tmp_path / "b", "lstm-1", "lstm", val[1], test[1], seed=3)
    write_run(tmp_path / "b", "gru-0", "gru", val[0], test[0])  # same run in both: once
    members = load_member_predictions([tmp_path / "a", tmp_path / "b"])
    assert members.run_ids == ("gru-0", "lstm-1")
    assert "gru-0" in members.skipped and "duplicate" in members.skipped["gru-0"]
    assert members.sources == (str(tmp_path / "a"), str(tmp_path / "b"))


def test_mismatched_sample_ids_name_the_groups_of_members(study_dir):
    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    # another window step: the first window ends one row later
    write_run(
        study_dir,
        "conv_gru-9",
        "conv_gru",
        val[0][1:],
        test[0],
        val_ids=np.arange(VAL_START + 1, VAL_START + N_VAL),
        val_y=_targets(N_VAL)[1:],
    )
    with pytest.raises(ValueError) as info:
        load_member_predictions([study_dir])
    message = str(info.value)
    assert "2 groups" in message
    assert "group 1 (3 member(s): conv1d-2, gru-0, lstm-1)" in message
    assert "group 2 (1 member(s): conv_gru-9)" in message
    assert f"validation {N_VAL - 1} samples, sample_index {VAL_START + 1}.." in message
    assert f"lacks 1 validation id(s) of group 1 (e.g. {VAL_START})" in message
    assert "align='common'" in message
    # opting in: the sample ids all members share
    members = load_member_predictions([study_dir], align="common")
    assert members.n_members == 4 and members.val_predictions.shape == (4, N_VAL - 1)
    assert members.val_sample_index[0] == VAL_START + 1
    assert members.dropped_samples == {"validation": 1, "test": 0}
    np.testing.assert_array_equal(members.val_targets, _targets(N_VAL)[1:])


def test_length_mismatch_in_test_names_the_member(study_dir):
    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    write_run(study_dir, "short-7", "gru", val[0], test[0][:-5], test_y=_targets(N_TEST, 1.0)[:-5])
    with pytest.raises(
        ValueError,
        match=r"(?s)group 2 \(1 member\(s\): short-7\).*"
        r"test 75 samples.*lacks 5 test id\(s\)",
    ):
        load_member_predictions([study_dir])


def test_members_with_other_targets_are_an_error(study_dir):
    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    write_run(study_dir, "other-8", "gru", val[0], test[0], val_y=_targets(N_VAL) + 0.5)
    with pytest.raises(
        ValueError,
        match=r"different validation targets.*other-8 differ "
        r"from conv1d-2",
    ):
        load_member_predictions([study_dir])


def test_bad_inputs_are_clear_errors(tmp_path, study_dir):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no `runs` report in"):
        load_member_predictions([tmp_path / "empty"])
    with pytest.raises(FileNotFoundError, match="run directory not found"):
        load_member_predictions([tmp_path / "nowhere"])
    with pytest.raises(ValueError, match=r"at least 4 members .* Received: 3"):
        load_member_predictions([study_dir], min_members=4)
    with pytest.raises(ValueError, match=r"`align` must be one of .* Received: align='x'"):
        load_member_predictions([study_dir], align="x")
    with pytest.raises(ValueError, match=r"`min_members` must be an integer >= 1"):
        load_member_predictions([study_dir], min_members=0)
    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    ids = np.arange(VAL_START, VAL_START + N_VAL)
    ids[5] = ids[4]
    write_run(study_dir, "dup-1", "gru", val[0], test[0], val_ids=ids)
    with pytest.raises(
        ValueError,
        match=r"member dup-1 has duplicate `sample_index`.*"
        rf"\(e.g. {VAL_START + 4}\)",
    ):
        load_member_predictions([study_dir])


# ---------------------------------------------------------------------------------
# Building: cross-fitted choice, refit on validation, test once
# ---------------------------------------------------------------------------------


def test_chosen_ensemble_beats_the_best_single_member(study_dir):
    members = load_member_predictions([study_dir])
    rows = build_ensembles(members, loss="mae", n_folds=5)
    assert [row["method"] for row in rows] == METHODS
    chosen = [row for row in rows if row["chosen"]]
    assert len(chosen) == 1 and chosen[0]["method"] != "best_single"
    best = next(row for row in rows if row["method"] == "best_single")
    assert best["val_score"] == pytest.approx(1.0)  # member y + 1
    assert json.loads(best["weights"]) == [0.0, 1.0, 0.0]  # gru-0, aligned with members
    assert chosen[0]["val_score"] <= best["best_single_val"]
    assert chosen[0]["val_score"] < 0.05 and chosen[0]["test_score"] < 0.05
    assert all(row["best_single_val"] == pytest.approx(1.0) for row in rows)
    assert all(row["best_single_test"] == pytest.approx(1.0) for row in rows)
    assert len({row["ensemble_id"] for row in rows}) == 1
    for row in rows:
        assert row["val_test_gap"] == pytest.approx(row["test_score"] - row["val_score"])
    assert -1.0 <= rows[0]["mean_pairwise_correlation"] <= 1.0


def test_test_scores_come_once_from_the_weights_refit_on_validation(study_dir):
    members = load_member_predictions([study_dir])
    rows = {row["method"]: row for row in build_ensembles(members, loss="mae")}
    slsqp = rows["weighted_slsqp"]
    refit = WeightedAverage(loss="mae", method="slsqp").fit(
        members.val_predictions, members.val_targets
    )
    weights = np.array(json.loads(slsqp["weights"]))
    np.testing.assert_allclose(weights, refit.weights_, atol=1e-12)
    by_hand = np.mean(np.abs(weights @ members.test_predictions - members.test_targets))
    assert slsqp["test_score"] == pytest.approx(by_hand, rel=1e-12)
    simple = rows["simple_average"]
    assert simple["test_score"] == pytest.approx(
        np.mean(np.abs(members.test_predictions.mean(axis=0) - members.test_targets))
    )


def test_test_split_decides_nothing(study_dir):
    members = load_member_predictions([study_dir])
    rows = build_ensembles(members)
    noisy = np.random.default_rng(0).normal(0, 50, members.test_predictions.shape)
    garbled = dataclasses.replace(members, test_predictions=members.test_predictions + noisy)
    rows_garbled = build_ensembles(garbled)
    for row, other in zip(rows, rows_garbled):
        assert row["chosen"] == other["chosen"]
        assert row["weights"] == other["weights"]
        assert row["cv_score"] == other["cv_score"]
        assert row["val_score"] == other["val_score"]
        assert row["test_score"] != other["test_score"]


def test_build_is_deterministic_and_validates(study_dir):
    members = load_member_predictions([study_dir])
    first, second = build_ensembles(members), build_ensembles(members)
    for a, b in zip(first, second):
        assert {k: v for k, v in a.items() if k != "created_at"} == {
            k: v for k, v in b.items() if k != "created_at"
        }
    with pytest.raises(ValueError, match=r"`loss` must be one of"):
        build_ensembles(members, loss="huber")
    with pytest.raises(
        ValueError,
        match=r"`n_folds` must be an integer in \[2, "
        rf"n_samples={N_VAL}\]",
    ):
        build_ensembles(members, n_folds=1)


# ---------------------------------------------------------------------------------
# Report: Parquet round trip, plot, CLI
# ---------------------------------------------------------------------------------


def test_report_round_trips_through_parquet(study_dir):
    members = load_member_predictions([study_dir])
    rows = build_ensembles(members)
    part, plot = write_ensemble_report(study_dir, rows, members)
    assert part == study_dir / "reports" / "ensembles" / f"part-{rows[0]['ensemble_id']}.parquet"
    assert plot == study_dir / "plots" / "ensemble_weights.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = pd.read_parquet(study_dir / "reports" / "ensembles")
    # a hold-out study's parts leave out the K-fold column `fit`
    assert list(table.columns) == [n for n in reports.SCHEMAS["ensembles"].names if n != "fit"]
    assert list(table["method"]) == METHODS and table["chosen"].sum() == 1
    for row in table.itertuples():
        member_ids, weights = json.loads(row.members), json.loads(row.weights)
        assert member_ids == list(members.run_ids)
        assert len(weights) == len(member_ids)
        assert all(w >= 0 for w in weights) and abs(sum(weights) - 1.0) <= 1e-9
        assert json.loads(row.sources) == [str(study_dir)]
    assert table["val_score"].dtype == np.float64
    with pytest.raises(ValueError, match="share one `ensemble_id`"):
        write_ensemble_report(study_dir, rows + [dict(rows[0], ensemble_id="other")], members)


def test_run_ensemble_writes_to_out_dir(study_dir, tmp_path, capsys):
    out = run_ensemble([study_dir], out_dir=tmp_path / "out")
    assert out == tmp_path / "out"
    assert len(reports.read_table(out, "ensembles")) == len(METHODS)
    assert (out / "plots" / "ensemble_weights.png").is_file()
    printed = capsys.readouterr().out
    assert "weighted_slsqp" in printed and "not used (1): status failed: dense-bad" in printed
    # rerun: same key, the same part rewritten, not a second one
    run_ensemble([study_dir], out_dir=tmp_path / "out", progress=False)
    assert len(list((out / "reports" / "ensembles").glob("part-*.parquet"))) == 1


def test_cli_ensemble_prints_methods_and_exits_2_on_bad_input(study_dir, tmp_path, capsys):
    assert cli.main(["ensemble", str(study_dir)]) == 0
    printed = capsys.readouterr().out
    for method in METHODS:
        assert method in printed
    assert "best single gru gru-0" in printed
    assert (study_dir / "reports" / "ensembles").is_dir()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["ensemble", str(empty)]) == 2
    assert "error: no `runs` report in" in capsys.readouterr().err

    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    write_run(
        study_dir,
        "conv_gru-9",
        "conv_gru",
        val[0][1:],
        test[0],
        val_ids=np.arange(VAL_START + 1, VAL_START + N_VAL),
        val_y=_targets(N_VAL)[1:],
    )
    assert cli.main(["ensemble", str(study_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: members have different sample ids") and "conv_gru-9" in err
    assert (
        cli.main(
            [
                "ensemble",
                str(study_dir),
                "--align",
                "common",
                "--loss",
                "mse",
                "--out-dir",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert set(reports.read_table(tmp_path / "o", "ensembles")["loss"]) == {"mse"}


def test_cli_choices_match_the_stage():
    from dlpipe.ensembles import LOSSES
    from dlpipe.pipelines.ensemble import ALIGN_CHOICES, LOSS_CHOICES
    from dlpipe.tasks.ensembling.members import ALIGN_MODES

    assert ALIGN_CHOICES == ALIGN_MODES and set(LOSS_CHOICES) == set(LOSSES)


def test_cli_ensemble_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["ensemble", "--help"])
    assert info.value.code == 0
    assert "--align" in capsys.readouterr().out


# ---------------------------------------------------------------------------------
# Study files: the optional `ensemble` section
# ---------------------------------------------------------------------------------

STUDY = """
study: s1
data: {format: jena, path: DATA}
split: {train_fraction: 0.5, validation_fraction: 0.25}
windows: {lookback: 60, step: 6, delay: 12, batch_size: 32}
models:
  - {family: gru, hp: {units: 16}}
"""


def _study(tmp_path, jena_csv, extra=""):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("DATA", jena_csv.name) + extra)
    return path


def test_ensemble_section_defaults_off_and_validates(tmp_path, jena_csv):
    assert load_study(_study(tmp_path, jena_csv)).ensemble == EnsembleSpec(enabled=False)
    cfg = load_study(
        _study(
            tmp_path, jena_csv, "ensemble: {enabled: true, loss: mse, n_folds: 3, align: common}\n"
        )
    )
    assert cfg.ensemble == EnsembleSpec(enabled=True, loss="mse", n_folds=3, align="common")
    for section, message in [
        ("ensemble: {enabled: yes-please}", r"`ensemble.enabled` must be a boolean"),
        ("ensemble: {loss: huber}", r"`ensemble`: `loss` must be one of mae, mse"),
        ("ensemble: {n_folds: 1}", r"`ensemble`: `n_folds` must be an integer >= 2"),
        ("ensemble: {align: loose}", r"`ensemble`: `align` must be one of exact, common"),
        ("ensemble: {enable: true}", r"unknown key `ensemble.enable`"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_study(_study(tmp_path, jena_csv, section + "\n"))


def test_demo_study_enables_the_ensemble_stage():
    cfg = load_study(cli.demo_config_path())
    assert cfg.ensemble.enabled and cfg.ensemble.loss == "mae"


def test_study_stage_reports_a_failure_without_raising(tmp_path, study_dir, capsys):
    assert run_ensemble_stage(study_dir, EnsembleSpec(enabled=True)) == study_dir
    assert "weighted_nelder_mead" in capsys.readouterr().out
    lonely = tmp_path / "lonely"
    val, _ = _known_members(N_VAL)
    test, _ = _known_members(N_TEST, 1.0)
    write_run(lonely, "gru-0", "gru", val[0], test[0])
    assert run_ensemble_stage(lonely, EnsembleSpec(enabled=True)) is None
    assert "ensemble skipped: an ensemble needs at least 2 members" in capsys.readouterr().err


def test_sweep_trials_without_test_predictions_are_left_out(study_dir):
    # a sweep scores only its best K on test: the other trials have validation rows only
    val, _ = _known_members(N_VAL)
    rows = [
        {
            "run_id": "trial-9",
            "split": "validation",
            "sample_index": VAL_START + i,
            "prediction": float(p),
            "target": float(y),
        }
        for i, (p, y) in enumerate(zip(val[0], _targets(N_VAL)))
    ]
    reports.write_part(study_dir, "predictions", "trial-9", rows)
    reports.write_part(
        study_dir,
        "runs",
        "trial-9",
        [{"run_id": "trial-9", "family": "gru", "status": "ok", "val_mae_units": 1.0}],
    )
    members = load_member_predictions([study_dir])
    assert "trial-9" not in members.run_ids and len(members.run_ids) == 3
    assert "no test predictions" in members.skipped["trial-9"]


def test_classification_rows_report_accuracy_of_the_combined_probabilities():
    import json

    from dlpipe.tasks.ensembling.build import build_ensembles
    from dlpipe.tasks.ensembling.members import MemberPredictions

    rng = np.random.default_rng(0)
    n, k = 60, 3
    y_val, y_test = rng.integers(0, k, n), rng.integers(0, k, n)

    def member(y, skill):
        p = rng.dirichlet(np.ones(k), n)
        p[np.arange(n), y] += skill
        return p / p.sum(axis=1, keepdims=True)

    members = MemberPredictions(
        run_ids=("a", "b"),
        families=("lstm", "conv1d"),
        val_predictions=np.stack([member(y_val, 1.0), member(y_val, 0.3)]),
        val_targets=y_val.astype(float),
        test_predictions=np.stack([member(y_test, 1.0), member(y_test, 0.3)]),
        test_targets=y_test.astype(float),
        val_sample_index=np.arange(n),
        test_sample_index=np.arange(n),
    )
    rows = {r["method"]: r for r in build_ensembles(members, loss="log_loss", n_folds=3)}
    average = rows["simple_average"]
    assert json.loads(average["weights"]) == [0.5, 0.5]
    # independent: argmax of the mean of the two members' probabilities
    mean = members.val_predictions.mean(axis=0)
    assert average["val_accuracy"] == pytest.approx(np.mean(mean.argmax(axis=1) == y_val))
    mean = members.test_predictions.mean(axis=0)
    assert average["test_accuracy"] == pytest.approx(np.mean(mean.argmax(axis=1) == y_test))
    # regression losses have no accuracy
    regression = build_ensembles(
        MemberPredictions(
            run_ids=("a", "b"),
            families=("gru", "lstm"),
            val_predictions=rng.normal(size=(2, n)),
            val_targets=rng.normal(size=n),
            test_predictions=rng.normal(size=(2, n)),
            test_targets=rng.normal(size=n),
            val_sample_index=np.arange(n),
            test_sample_index=np.arange(n),
        ),
        loss="mae",
        n_folds=3,
    )
    assert all(r["val_accuracy"] is None for r in regression)  # NaN once written
