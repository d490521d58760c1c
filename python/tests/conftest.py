"""Shared fixtures: a small real search on the embedded digits, run once."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

import snac_pack

REPO = Path(__file__).resolve().parents[2]

# A tutorial-1-style experiment, small enough for a test: the embedded
# digits, with local search and the synthesis hand-off.
SMALL = {
    "dataset": {"name": "digits", "flatten": True, "one_hot": True},
    "search": {
        "model_type": "mlp",
        "n_trials": 4,
        "epochs": 3,
        "objective_names": ["performance_metric", "bops"],
        "maximize_flags": [True, False],
        "sampler": "nsga2",
        "population_size": 4,
        "seed": 7,
    },
    "search_space": {
        "mlp_width_space": [8, 16, 32],
        "act_space": ["relu", "tanh"],
        "norm_space": [None, "batch"],
        "output_dim": 10,
        "output_activation": "softmax",
    },
    "hls_config": {"board": "zcu102", "model": {"precision": "ap_fixed<8,3>", "reuse_factor": 1, "strategy": "Latency"}},
    "synthesis": {"total_bits": 8, "int_bits": 3},
    "local_search": {
        "qat_epochs": 1,
        "pruning_iterations": 1,
        "pruning_epochs": 1,
        "pruning_rate": 0.8,
        "precision_pairs": [{"total_bits": 8, "int_bits": 3}],
    },
}


@pytest.fixture(scope="session")
def small_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("run") / "results"
    return snac_pack.run(SMALL, results_dir=results, progress=False)


def snac_binary():
    """The `snac` command: $SNAC_BIN, the console script next to this
    Python, or the cargo build."""
    if os.environ.get("SNAC_BIN"):
        return os.environ["SNAC_BIN"]
    import sys

    beside = Path(sys.executable).parent / "snac"
    if beside.exists():
        return str(beside)
    built = REPO / "target" / "release" / "snac"
    if built.exists():
        return str(built)
    found = shutil.which("snac")
    if found:
        return found
    pytest.skip("no snac command found (set SNAC_BIN)")


def run_snac(*args, **kwargs):
    return subprocess.run([snac_binary(), *map(str, args)], capture_output=True, text=True, **kwargs)
