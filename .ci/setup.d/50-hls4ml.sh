# The Python side of the hls4ml hand-off: hls4ml, qonnx and onnx in the
# repository's venv (.venv, shared with the other setup scripts: only ever
# pip-installed into, never recreated). The export tests run hls4ml's
# conversion and its C simulation (g++) against our integer inference.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check hls4ml==1.3.0 qonnx==1.0.0 onnx==1.23.2
command -v g++ >/dev/null || { echo "g++ is needed for hls4ml's C simulation" >&2; exit 1; }
export SNAC_PYTHON="$PWD/.venv/bin/python"
