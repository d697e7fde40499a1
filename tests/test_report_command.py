"""``dlpipe report`` and the plots and tables it shows (issue 16): several studies side
by side, ``--version``, no TensorFlow, changes in percentage points for accuracy, run
ids printed whole, smoothing without lag, readable log axes."""

import math
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from dlpipe.metrics import get_metric
from dlpipe.pipelines.cli import main
from dlpipe.pipelines.report import change_column
from dlpipe.tasks.reports.plots import smooth_debiased

from report_fixture import write_study


def test_accuracy_changes_in_points_mae_in_percent():
    assert change_column(get_metric("accuracy"), [0.75, 0.5], 0.5) == {
        "vs baseline pp": [pytest.approx(25.0), 0.0]
    }
    (values,) = change_column(get_metric("mae"), [2.0], 2.5).values()
    assert values == [pytest.approx(-20.0)]
    assert list(change_column(get_metric("mae"), [2.0], 2.5)) == ["vs baseline %"]


def test_bias_corrected_ema_by_hand():
    # m: 0.5, 0.25, 0.125, 0.5625; divided by 1 - 0.5**n: 1, 1/3, 1/7, 0.6
    np.testing.assert_allclose(smooth_debiased([1, 0, 0, 1], 0.5), [1, 1 / 3, 1 / 7, 0.6])
    # non-finite values skipped, the average carried: 2; 2; (0.5*1 + 2) / 0.75
    out = smooth_debiased([math.nan, 2, math.inf, 4], 0.5)
    assert math.isnan(out[0])
    np.testing.assert_allclose(out[1:], [2, 2, 2.5 / 0.75])
    np.testing.assert_allclose(smooth_debiased([3, 1, 2], 0.0), [3, 1, 2])


def test_log_axis_labels_plain_numbers_within_decades():
    from dlpipe.tasks.reports.plots import pyplot, readable_log_axis

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.scatter([1e-4, 3e-4, 2e-3], [1, 2, 3])
    readable_log_axis(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert {"0.0001", "0.0002", "0.0005", "0.001", "0.002"} <= set(labels)
    fig, ax = plt.subplots()  # within one decade: every digit labelled
    ax.scatter([6e-4, 9.7e-4], [1, 2])
    readable_log_axis(ax.xaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    plt.close(fig)
    assert {"0.0006", "0.0007", "0.0008", "0.0009"} <= set(labels)


def test_run_ids_are_printed_whole(capsys):
    from dlpipe.pipelines.console import print_frame

    long_id = "bidirectional_lstm_with_a_long_name-0123456789ab"
    frame = pd.DataFrame(
        {f"column {i}": ["some text here"] for i in range(10)} | {"run_id": [long_id]}
    )
    print_frame(frame, "wide")
    assert long_id in capsys.readouterr().out


def test_report_puts_studies_side_by_side(tmp_path, capsys):
    first = write_study(tmp_path / "a")
    second = write_study(tmp_path / "b")
    assert main(["report", str(first), str(second), "--html"]) == 0
    out = capsys.readouterr().out
    assert "2 studies side by side" in out
    # best run gru-aaa (val MAE 2.0) against the baseline 2.5: -20.0 %
    assert out.count("gru-aaa") >= 4 and "-20.0 %" in out
    assert f"html: {first / 'reports' / 'index.html'}" in out
    assert (second / "reports" / "index.html").is_file()
    assert main(["report", str(first), str(tmp_path / "none")]) == 2


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"dlpipe {version('dlpipe')}"


def test_report_loads_no_tensorflow(tmp_path):
    run_dir = write_study(tmp_path / "a")
    code = (
        "import sys\n"
        "from dlpipe.pipelines.cli import main\n"
        f"assert main(['report', {str(run_dir)!r}]) == 0\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'ray') if m in sys.modules)\n"
        "print('loaded:', heavy)\n"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "loaded: []" in proc.stdout
    assert seconds < 30  # well under 2 s on a quiet machine; bounded for shared CI
