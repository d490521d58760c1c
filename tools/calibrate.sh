#!/usr/bin/env bash
# Refits the analytical estimator's prices on the corpus and writes them
# into analytical.rs (CSYNTH), then regenerates docs/estimator-accuracy.md.
# Set SNAC_RULE4ML_DIR (or have rule4ml importable) for the rule4ml columns.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p snac
fitted=$(target/release/snac estimate --calibrate | sed -n '/pub const CSYNTH/,/^};/p')
python3 - "$fitted" <<'PY'
import re, sys
path = "crates/snac-core/src/estimate/analytical.rs"
text = open(path).read()
text = re.sub(r"pub const CSYNTH: Coefficients = Coefficients \{.*?\n\};", lambda _: sys.argv[1], text, count=1, flags=re.S)
open(path, "w").write(text)
PY
cargo build --release -p snac
target/release/snac estimate --validate --markdown docs/estimator-accuracy.md > /dev/null
