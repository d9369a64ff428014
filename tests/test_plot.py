"""`genrec plot`: a PNG of a run's learning curves from metrics.jsonl, or an error naming what to install.
matplotlib comes with the test extra (and `genrec[plot]`), PIL with the hf extra."""

import sys

import pytest
from PIL import Image  # the hf extra

import fixtures_runs as runs  # tests/ is on sys.path (conftest.py)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return runs.sasrec_run(tmp_path_factory)


def test_plot_writes_a_png_that_decodes(run, tmp_path):
  out = tmp_path / "curves.png"
  code, stdout, err = runs.genrec_cli("plot", run["dir"], "--out", out)
  assert code == 0, err
  assert str(out) in stdout
  with Image.open(out) as png:
    png.load()
    assert png.format == "PNG" and png.size[0] > 100 and png.size[1] > 100
    assert len(set(png.convert("L").getdata())) > 2  # curves and text, not a blank canvas


def test_plot_defaults_to_the_run_folder(run, tmp_path):
  workdir = runs.copy_run(run, tmp_path / "run")
  code, _, err = runs.genrec_cli("plot", workdir)
  assert code == 0, err
  assert (workdir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_error_names_the_extra(run, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
  code, _, err = runs.genrec_cli("plot", run["dir"], "--out", tmp_path / "c.png")
  assert (
    code == 2
    and "matplotlib is not installed (genrec plot); it comes with genrec's [plot] extra: pip install 'genrec[plot]'"
    in err
  )
  assert not (tmp_path / "c.png").exists()


def test_a_folder_without_metrics_is_a_clear_error(tmp_path):
  code, _, err = runs.genrec_cli("plot", tmp_path)
  assert code == 2 and "has no metrics.jsonl" in err


def test_a_log_without_curves_is_a_clear_error(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "split": "tra')  # only a torn line
  code, _, err = runs.genrec_cli("plot", tmp_path)
  assert code == 2 and "holds no train loss and no valid ndcg@10 to plot" in err
