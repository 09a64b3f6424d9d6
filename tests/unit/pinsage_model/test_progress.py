"""Progress bars redraw rarely and in ASCII when stderr is a log file, not a terminal."""

import io
import sys

from pinsage_model.progress import LOG_INTERVAL_S, progress_bar


def test_log_file_gets_few_ascii_updates(monkeypatch):
    log = io.StringIO()  # not a terminal, like an Airflow or CI log
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(range(100_000), desc="work", unit="item")
    assert bar.mininterval == LOG_INTERVAL_S and bar.ascii
    assert sum(1 for _ in bar) == 100_000
    # a fast loop inside one interval leaves the opening and the closing line only
    assert log.getvalue().count("\r") <= 3
    assert "100000/100000" in log.getvalue()


def test_disabled_bar_still_iterates(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert list(progress_bar(range(3), desc="quiet", disable=True)) == [0, 1, 2]
    assert sys.stderr.getvalue() == ""


def test_postfix_without_refresh_keeps_the_log_short(monkeypatch):
    # the training loop sets a postfix every step with refresh=False: it waits for the next redraw
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    bar = progress_bar(total=5000, desc="epoch 1/1", unit="step")
    for step in range(5000):
        bar.set_postfix(loss=f"{1.0 / (step + 1):.4f}", refresh=False)
        bar.update(1)
    bar.close()
    assert log.getvalue().count("\r") <= 3 and "loss=0.0002" in log.getvalue()
