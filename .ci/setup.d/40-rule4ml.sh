# rule4ml 0.2.0's GNN weights for the rule4ml parity tests
# (crates/snac-core/src/estimate/rule4ml). Only the package files are needed:
# snac reads the weights itself, so no torch/TensorFlow (--no-deps). The
# weights are GPL-3.0 and never enter the repository. Sourced by .ci/run.
# .venv is shared with other setup scripts: create it only when missing.
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check --no-deps rule4ml==0.2.0
# find_spec does not run rule4ml's __init__, so this needs none of its deps.
SNAC_RULE4ML_DIR="$(.venv/bin/python -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("rule4ml").origin))')"
export SNAC_RULE4ML_DIR
echo "rule4ml weights: $SNAC_RULE4ML_DIR"
