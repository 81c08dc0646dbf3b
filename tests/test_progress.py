"""Progress is a tqdm bar on a terminal and plain periodic lines anywhere else."""

import re
import sys

from tqdm.auto import tqdm

from toonvae.progress import PlainProgress, progress


def test_without_a_terminal_progress_prints_plain_lines_with_the_rate(capsys):
    bar = progress(range(5), desc="preprocessing", unit="img", every=0.0)
    assert isinstance(bar, PlainProgress)  # pytest's captured stderr is not a TTY
    with bar:
        assert list(bar) == list(range(5))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("preprocessing: 1/5 img (")
    assert re.fullmatch(r"preprocessing: 5/5 img \(\d+(\.\d)? img/s\)", lines[-1]), lines[-1]
    assert all("\r" not in line for line in lines)


def test_quiet_when_a_run_is_shorter_than_the_interval(capsys):
    with progress(total=3, desc="epoch 1/2", unit="batch", every=3600) as bar:
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_on_a_terminal_it_is_a_tqdm_bar(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress(total=2, desc="downloading", unit="B", unit_scale=True)
    assert isinstance(bar, tqdm)
    bar.close()
