"""``reports/index.html`` (issue 16): one self-contained page per study and sweep,
rendered from report tables written in the real format, checked in Chromium.

The end-to-end smoke studies of each kind (tests/test_pipeline.py, test_text_study.py,
test_image_study.py) open the page their real run wrote with the same checks."""

import json
import re
from datetime import datetime, timezone

import numpy as np
import pytest

from dlpipe.tasks.reports import tables as reports
from dlpipe.tasks.training.records import RunResult, record_run

from browser import check_report, click_header, column_texts, open_browser

STUDY = "weather-fixture"


def model_row(run_id, family, val, *, status="ok", error=None, epochs=4):
    """A ``runs`` row of a weather model as ``run_row`` writes it (MAE in degC)."""
    return {
        "run_id": run_id,
        "family": family,
        "hyperparameters": {"units": 8},
        "seed": 1,
        "lookback": 24,
        "step": 2,
        "delay": 6,
        "epochs_run": epochs,
        "best_epoch": epochs - 1 if epochs else None,
        "params": 100,
        "metric": "mae",
        "val_loss": val / 8.0,
        "test_loss": val / 8.0,
        "val_metric": val,
        "test_metric": val * 1.1,
        "val_mae": val / 8.0,
        "test_mae": val / 8.0,
        "val_mae_units": val,
        "test_mae_units": val * 1.1,
        "wall_time_s": 3.0,
        "resources": {"num_cpus": 1},
        "devices": "CPU:0",
        "status": status,
        "error": error,
    }


def history(run_id, epochs=4):
    """Falling losses, one row per epoch."""
    return [
        {
            "run_id": run_id,
            "epoch": e,
            "loss": 1.0 / e,
            "val_loss": 1.2 / e,
            "lr": 1e-3,
            "metric": None,
            "val_metric": None,
            "seconds": 0.5,
        }
        for e in range(1, epochs + 1)
    ]


@pytest.fixture
def study_dir(tmp_path):
    """A weather run directory: dataset, baseline, two models, a failed one, plots and
    ensembles, each table written by the pipelines' own writers."""
    from dlpipe.pipelines.study import write_plots

    run_dir = tmp_path / STUDY
    (run_dir).mkdir()
    (run_dir / "study.json").write_text(
        json.dumps({"source_file": "configs/demo_weather.yaml", "pipeline": "timeseries"})
    )
    quality = {"duplicates_dropped": 2, "gaps_filled": 1, "constant_features": ["x"]}
    reports.write_part(
        run_dir,
        "datasets",
        "k1",
        [
            {
                "dataset_key": "k1",
                "source": "pvlib:723170TYA.CSV",
                "rows": 8760,
                "columns": json.dumps(["T", "rh"]),
                "target": "T",
                "splits": json.dumps({"train": [0, 5000], "validation": [5000, 7000]}),
                "sentinel_counts": json.dumps({"rh": 3}),
                "quality": json.dumps(quality),
            }
        ],
    )
    base = model_row("baseline-k1-24-6", "baseline", 2.5, epochs=0)
    rows = [
        (base, []),
        (model_row("gru-aaa", "gru", 2.0), history("gru-aaa")),
        (model_row("dense-bbb", "dense", 2.8), history("dense-bbb")),
        (model_row("zeta-ccc", "gru", 2.2), history("zeta-ccc")),
    ]
    failed = model_row("lstm-ddd", "lstm", float("nan"), status="failed", epochs=1)
    failed["error"] = "Traceback ...\nValueError: loss diverged (NaN/inf) at epoch 1"
    rows.append((failed, []))
    for run, hist in rows:
        record_run(
            run_dir, RunResult(run, hist), pipeline="timeseries", study=STUDY, dataset_key="k1"
        )
    write_plots(run_dir, units="degC")
    reports.write_part(run_dir, "ensembles", "e1", [ensemble_row("weighted_slsqp", True)])
    return run_dir


def ensemble_row(method, chosen):
    return {
        "ensemble_id": "ens-1",
        "method": method,
        "chosen": chosen,
        "loss": "mae",
        "members": json.dumps(["dense-bbb", "gru-aaa"]),
        "weights": json.dumps([0.25, 0.75]),
        "cv_score": 1.9,
        "val_score": 1.8,
        "test_score": 2.1,
        "val_test_gap": 0.3,
        "best_single_val": 2.0,
        "best_single_test": 2.2,
        "mean_pairwise_correlation": 0.9,
        "val_accuracy": float("nan"),
        "test_accuracy": float("nan"),
        "sources": json.dumps(["x"]),
        "created_at": datetime.now(timezone.utc),
    }


def test_page_is_self_contained_with_every_section(study_dir):
    from dlpipe.pipelines.html_report import write_html_report

    html = write_html_report(study_dir).read_text()
    # nothing fetched: no external script, style sheet, image or font
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    assert (
        "<link" not in html and html.count('src="data:image/png;base64,') == 2
    )  # loss curves, val MAE
    for text in (
        "configs/demo_weather.yaml",
        "pvlib:723170TYA.CSV",
        "duplicates_dropped",
        "ValueError: loss diverged (NaN/inf) at epoch 1",  # the failed run's whole error
        "weighted_slsqp",
        "gru-aaa 0.75",  # members with their weights
        "dlpipe tensorboard",
    ):
        assert text in html, text
    assert "<script" in html and "Ensembles" in html


@pytest.mark.train  # starts a browser (seconds)
def test_report_in_chromium_sorts_and_shows_everything(study_dir):
    from dlpipe.pipelines.html_report import write_html_report

    write_html_report(study_dir)
    runs = reports.read_table(study_dir, "runs")
    check_report(study_dir, runs)  # rows, images, console, best first (gru-aaa, MAE 2.0)
    assert (study_dir / "reports" / "index.png").stat().st_size > 10_000
    driver = open_browser()
    try:
        driver.get((study_dir / "reports" / "index.html").as_uri())
        click_header(driver, "runs", "val MAE")  # MAE: lowest first, the failed (n/a) last
        assert column_texts(driver, "runs", "run_id") == [
            "gru-aaa", "zeta-ccc", "baseline-k1-24-6", "dense-bbb", "lstm-ddd"
        ]  # fmt: skip
        click_header(driver, "runs", "val MAE")  # again: worst first, still n/a last
        assert column_texts(driver, "runs", "run_id")[:4] == [
            "dense-bbb", "baseline-k1-24-6", "zeta-ccc", "gru-aaa"
        ]  # fmt: skip
        assert column_texts(driver, "runs", "run_id")[-1] == "lstm-ddd"
        widths = driver.execute_script(
            "return Array.from(document.querySelectorAll('#runs td.id'))"
            ".map(td => td.scrollWidth <= td.clientWidth)"
        )
        assert widths and all(widths)  # run ids are never clipped
    finally:
        driver.quit()


def test_sweep_page_lists_trials_with_the_running_best(study_dir):
    from dlpipe.pipelines.html_report import write_html_report

    losses = [0.30, 0.35, float("nan"), 0.20, 0.25]
    trials = [
        {
            "sweep_id": "s",
            "trial": i + 1,
            "run_id": f"gru-{i}",
            "family": "gru",
            "hyperparameters": json.dumps({"units": 8 * (i + 1)}),
            "val_loss": loss,
            "val_metric": loss * 8,
            "status": "failed" if np.isnan(loss) else "ok",
        }
        for i, loss in enumerate(losses)
    ]
    reports.write_part(study_dir, "trials", "t", trials, kind="timeseries")
    html = write_html_report(study_dir).read_text()
    assert "<title>sweep weather-fixture</title>" in html
    section = html.split('id="trials"')[1].split("</table>")[0]
    running = re.findall(
        r'<td class="num" data-value="([^"]*)">[^<]*</td>\s*'
        r'<td class="" data-value="(?:ok|failed)"',
        section,
    )
    assert [float(v) for v in running] == [0.30, 0.30, 0.30, 0.20, 0.20]
