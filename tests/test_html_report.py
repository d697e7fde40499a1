"""``reports/index.html`` (issue 16): one self-contained page per study and sweep,
rendered from report tables written in the real format, checked in Chromium.

The end-to-end smoke studies of each kind (tests/test_pipeline.py, test_text_study.py,
test_image_study.py) open the page their real run wrote with the same checks."""

import json
import re

import numpy as np
import pytest

from dlpipe.tasks.reports import tables as reports

from browser import check_report, click_header, column_texts, open_browser
from report_fixture import STUDY, write_study


@pytest.fixture
def study_dir(tmp_path):
    return write_study(tmp_path / STUDY)


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
    (study_dir / "study.json").unlink()  # a sweep directory keeps its study in sweep.json
    stamp = {"study": {"source_file": "sweep_study.yaml", "pipeline": "timeseries"}}
    (study_dir / "sweep.json").write_text(json.dumps(stamp))
    html = write_html_report(study_dir).read_text()
    assert "<title>sweep weather-fixture</title>" in html and "sweep_study.yaml" in html
    section = html.split('id="trials"')[1].split("</table>")[0]
    running = re.findall(
        r'<td class="num" data-value="([^"]*)">[^<]*</td>\s*'
        r'<td class="" data-value="(?:ok|failed)"',
        section,
    )
    assert [float(v) for v in running] == [0.30, 0.30, 0.30, 0.20, 0.20]
