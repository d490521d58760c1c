"""The Python API against the real engine: DataFrames, models, errors,
interrupts, arrays in, the GIL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pandas as pd
import pytest

import snac_pack
from conftest import SMALL, run_snac


def optuna_or_skip():
    try:
        import optuna
    except ImportError:
        if os.environ.get("SNAC_REQUIRE_ALL") == "1":
            raise
        pytest.skip("optuna is not installed")
    return optuna


def test_run_returns_results_with_every_stage(small_run):
    r = small_run
    assert r.completed == 4 and not r.interrupted
    assert (r.results_dir / "mlp_search_results.csv").exists()
    assert r.report.exists()
    assert r.outcome["export_dir"] and os.path.exists(os.path.join(r.outcome["export_dir"], "convert.py"))
    # Every local-search model is handed off beside its model file.
    assert [os.path.basename(p) for p in r.outcome["exports"]] == ["best_model_8b3i_hls4ml"]
    assert all(os.path.exists(os.path.join(p, "model.onnx")) for p in r.outcome["exports"])
    assert [row["Precision"] for row in r.outcome["local"]][:1] == ["<8,3>"] or r.outcome["local"]
    assert set(r.models) == {"8b3i"}


def test_dataframe_has_optuna_columns_and_the_csv_values(small_run):
    df = small_run.trials_dataframe()
    assert len(df) == 4
    for column in ["number", "values_performance_metric", "values_bops", "datetime_start", "datetime_complete",
                   "duration", "state", "user_attrs_performance_metric"]:
        assert column in df.columns, (column, list(df.columns))
    assert any(c.startswith("params_") for c in df.columns)
    assert (df["state"] == "COMPLETE").all()
    csv = pd.read_csv(small_run.results_dir / "mlp_search_results.csv")
    np.testing.assert_allclose(sorted(df["values_performance_metric"]), sorted(csv["performance_metric"]), rtol=1e-6)


def test_dataframe_matches_optunas_own(small_run):
    optuna = optuna_or_skip()
    study = small_run.optuna_study()
    assert study.metric_names == ["performance_metric", "bops"]
    theirs = study.trials_dataframe()
    ours = small_run.trials_dataframe()
    assert list(ours.columns) == list(theirs.columns)
    for column in ["number", "values_performance_metric", "values_bops", "state"]:
        assert ours[column].tolist() == theirs[column].tolist(), column
    params = [c for c in ours.columns if c.startswith("params_")]
    pd.testing.assert_frame_equal(ours[params], theirs[params], check_dtype=False)
    assert optuna.load_study(study_name="snac", storage=small_run.storage).metric_names == [
        "performance_metric", "bops"]


def test_load_results_reads_a_results_dir_and_a_storage(small_run):
    again = snac_pack.load_results(small_run.results_dir)
    assert again.study_name == "snac" and again.completed == 4
    by_url = snac_pack.load_results(small_run.storage)
    assert by_url.results_dir is None and len(by_url.trials_dataframe()) == 4
    with pytest.raises(snac_pack.SnacError, match="not a snac results dir"):
        snac_pack.load_results(small_run.results_dir / "plots")


def test_predict_is_bit_exact_with_the_cli(small_run, tmp_path):
    model = small_run.best_model()
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 16, size=(50, model.input_features)).astype(np.float32)
    ours = model.predict(x)
    assert ours.shape == (50, 10)
    np.save(tmp_path / "x.npy", x)
    done = run_snac("predict", model.path, tmp_path / "x.npy", "--out", tmp_path / "y.npy")
    assert done.returncode == 0, done.stderr
    theirs = np.load(tmp_path / "y.npy")
    assert np.array_equal(ours, theirs)
    assert np.array_equal(snac_pack.predict(model.path, x[0]), ours[:1])


def test_export_takes_io_type_backend_and_clock(small_run, tmp_path):
    model = small_run.best_model("8b3i")
    script = model.export(tmp_path / "s", io_type="io_stream", backend="Vivado", clock_ns=4, samples=3)
    config = json.loads((script.parent / "hls4ml_config.json").read_text())
    assert (config["io_type"], config["backend"], config["clock_period_ns"]) == ("io_stream", "Vivado", 4.0)
    config = json.loads((model.export(tmp_path / "p", samples=3).parent / "hls4ml_config.json").read_text())
    assert (config["io_type"], config["backend"], config["clock_period_ns"]) == ("io_parallel", "Vitis", 5.0)
    with pytest.raises(snac_pack.SnacError, match="io_strem"):
        model.export(tmp_path / "x", io_type="io_strem")


def test_model_weights_qonnx_and_estimate(small_run, tmp_path):
    model = small_run.best_model("8b3i")
    weights = model.weights
    kernels = [k for k in weights if k.endswith("/kernel")]
    assert kernels and weights[kernels[0]].shape[0] == 64
    # Codes of <8,3> are multiples of 2^-5.
    assert np.all(np.abs(weights[kernels[0]] * 32 - np.round(weights[kernels[0]] * 32)) < 1e-9)
    onnx = model.to_qonnx(tmp_path / "m.onnx")
    assert onnx.stat().st_size > 100
    est = snac_pack.estimate(model.path, board="zcu102")
    assert est["lut"] > 0 and est["cycles"] > 0, est
    float_weights = small_run.trial_weights(0)
    assert any(k.endswith("/kernel") for k in float_weights)


def test_errors_carry_the_cli_message(tmp_path):
    bad = json.loads(json.dumps(SMALL))
    bad["search"]["n_trials"] = -3
    with pytest.raises(snac_pack.SnacError) as e:
        snac_pack.run(bad, results_dir=tmp_path / "r", progress=False)
    assert "search.n_trials" in str(e.value) and "-3" in str(e.value)
    (tmp_path / "c.yaml").write_text("search:\n  model_type: mpl\n")
    with pytest.raises(snac_pack.SnacError) as e:
        snac_pack.search(str(tmp_path / "c.yaml"), results_dir=tmp_path / "r2", progress=False)
    assert "c.yaml" in str(e.value) and "model_type" in str(e.value) and "mlp" in str(e.value)
    with pytest.raises(snac_pack.SnacError, match="missing.json"):
        snac_pack.load_model(tmp_path / "missing.json")
    with pytest.raises(snac_pack.SnacError, match="x_val, y_val missing"):
        snac_pack.search(SMALL, x_train=np.zeros((4, 3)), y_train=[0, 1, 0, 1], progress=False)
    with pytest.raises(TypeError, match="trails"):
        snac_pack.run(SMALL, trails=3)


def test_arrays_as_the_dataset(tmp_path):
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 4, size=(3, 6))
    y = rng.integers(0, 3, size=300)
    x = centers[y] + rng.normal(0, 0.5, size=(300, 6))
    arrays = dict(x_train=x[:240], y_train=y[:240], x_val=x[240:], y_val=y[240:])
    with pytest.raises(snac_pack.SnacError, match="output_dim is 10 but dataset 'arrays' has 3 classes"):
        snac_pack.search(SMALL, **arrays, progress=False)
    cfg = dict(SMALL, search_space=dict(SMALL["search_space"], output_dim=3))
    r = snac_pack.search(cfg, **arrays, results_dir=tmp_path / "r", trials=2, epochs=40, progress=False)
    df = r.trials_dataframe()
    assert len(df) == 2 and (df["state"] == "COMPLETE").all()
    assert df["values_performance_metric"].max() > 0.8  # three separable blobs; chance is 1/3
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(snac_pack.SnacError, match=r"x_train\[5, 2\] is nan"):
        snac_pack.search(cfg, x_train=bad[:240], y_train=y[:240], x_val=x[240:], y_val=y[240:], progress=False)


def test_the_gil_is_released_while_training(tmp_path):
    box = {}
    worker = threading.Thread(
        target=lambda: box.update(r=snac_pack.search(SMALL, results_dir=tmp_path / "r", trials=6, progress=False)))
    worker.start()
    ticks = 0
    while worker.is_alive():
        ticks += 1
        time.sleep(0.002)
    worker.join()
    assert box["r"].completed == 6
    # With the GIL held for the whole run this thread could not tick at all.
    assert ticks >= 20, ticks


def test_an_interrupt_stops_cleanly_and_keeps_completed_trials(tmp_path):
    script = textwrap.dedent(f"""
        import signal, sys, snac_pack
        from conftest import SMALL
        # A job started in the background inherits SIGINT ignored; a terminal
        # or a Jupyter kernel has Python's handler, as here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        cfg = dict(SMALL, search=dict(SMALL["search"], n_trials=400, epochs=30))
        try:
            snac_pack.search(cfg, results_dir={str(tmp_path / 'r')!r}, workers=1, progress=True)
        except snac_pack.Interrupted as e:
            print("INTERRUPTED", e.results.completed, flush=True)
            sys.exit(3)
        print("FINISHED", flush=True)
    """)
    env = dict(os.environ, SNAC_STOP_GRACE="0", PYTHONPATH=os.path.dirname(__file__))
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env)
    csv = tmp_path / "r" / "mlp_search_results.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not csv.exists() or len(csv.read_text().splitlines()) < 3):
        time.sleep(0.1)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 3, (out, err)
    assert out.startswith("INTERRUPTED"), out
    assert "stopping: no new trials start" in err
    r = snac_pack.load_results(tmp_path / "r")
    df = r.trials_dataframe()
    assert (df["state"] == "COMPLETE").sum() >= 2
    assert "RUNNING" not in set(df["state"])
    assert len(df) < 400


def test_a_timeout_ends_the_search_early_and_keeps_what_finished(tmp_path):
    cfg = dict(SMALL, search=dict(SMALL["search"], n_trials=500, epochs=20))
    r = snac_pack.search(cfg, results_dir=tmp_path / "r", timeout="1s", progress=False)
    assert r.timed_out and 0 < r.completed < 500
    df = r.trials_dataframe()
    assert "RUNNING" not in set(df["state"])
