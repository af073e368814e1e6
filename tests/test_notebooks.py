"""The notebooks run green in smoke mode; every notebook in notebooks/ must be listed here."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
LISTED = [
    "01_toy_variance_layer.ipynb",
    "02_lenet5_mnist.ipynb",
    "03_compare_guides_elbo.ipynb",
    "04_direction_magnitude_noise.ipynb",
    "05_adversarial_and_rl.ipynb",
    "06_regression.ipynb",
]
NEEDS_MNIST = {
    "02_lenet5_mnist.ipynb",
    "03_compare_guides_elbo.ipynb",
    "04_direction_magnitude_noise.ipynb",
    "05_adversarial_and_rl.ipynb",
}
NO_FIGURES: set[str] = set()
NEEDS_EXTRA = {"05_adversarial_and_rl.ipynb": ("torchattacks", "gymnasium")}
HAVE_MNIST = os.path.isdir(os.path.join(os.environ.get("PYRO_VARNET_DATA", "/nonexistent"), "MNIST", "raw"))


def test_every_notebook_is_listed():
    present = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert present == sorted(LISTED), f"unlisted or missing notebooks: {set(present) ^ set(LISTED)}"


@pytest.mark.integration
@pytest.mark.parametrize("name", LISTED)
def test_notebook_runs_in_smoke_mode(name, tmp_path, monkeypatch):
    if name in NEEDS_MNIST and not HAVE_MNIST:
        pytest.skip("MNIST not present under $PYRO_VARNET_DATA")
    for module in NEEDS_EXTRA.get(name, ()):
        pytest.importorskip(module, reason="needs the experiments extra")
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    monkeypatch.setenv("PYRO_VARNET_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as in Jupyter
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    figures = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures or name in NO_FIGURES, "the notebook's figures must render (as PNG) in Jupyter"
    assert (tmp_path / "bottleneck.png").is_file() or name != "01_toy_variance_layer.ipynb"
