"""The tutorial notebooks in examples/notebooks run headless, start to end,
at CI's budget (SNAC_NOTEBOOK_BUDGET=ci)."""

import os
from pathlib import Path

import pytest

from conftest import REPO

NOTEBOOKS = REPO / "examples" / "notebooks"
SHARED_DATA = REPO.parent / "shared" / "data"


def data_dir():
    if os.environ.get("SNAC_DATA_DIR"):
        return os.environ["SNAC_DATA_DIR"]
    if SHARED_DATA.is_dir():
        return str(SHARED_DATA)
    return None


@pytest.mark.parametrize(
    "name,needs_data",
    [("tutorial_1_mlp.ipynb", True), ("tutorial_2_blocks.ipynb", True), ("tutorial_3_qubit.ipynb", False)],
)
def test_notebook_runs(name, needs_data, tmp_path, monkeypatch):
    try:
        import nbclient
        import nbformat
    except ImportError:
        if os.environ.get("SNAC_REQUIRE_ALL") == "1":
            raise
        pytest.skip("nbclient/nbformat are not installed (pip install 'snac-pack[notebook]')")
    if needs_data and data_dir() is None:
        pytest.skip(f"{name} needs MNIST data: set SNAC_DATA_DIR or put ../shared/data beside the repo")
    if data_dir():
        monkeypatch.setenv("SNAC_DATA_DIR", data_dir())
    monkeypatch.setenv("SNAC_NOTEBOOK_BUDGET", "ci")
    monkeypatch.setenv("SNAC_NOTEBOOK_DIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), "commit notebooks without outputs"
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{name} showed no plot"
    assert (tmp_path / "results").is_dir()
