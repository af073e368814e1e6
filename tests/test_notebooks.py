"""The notebooks run green in smoke mode; every notebook in notebooks/ must be listed here."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
LISTED = ["01_toy_variance_layer.ipynb"]


def test_every_notebook_is_listed():
    present = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert present == sorted(LISTED), f"unlisted or missing notebooks: {set(present) ^ set(LISTED)}"


@pytest.mark.integration
@pytest.mark.parametrize("name", LISTED)
def test_notebook_runs_in_smoke_mode(name, tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    monkeypatch.setenv("PYRO_VARNET_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert (tmp_path / "bottleneck.png").is_file() or name != "01_toy_variance_layer.ipynb"
