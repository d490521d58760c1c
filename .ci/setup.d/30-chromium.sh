# Headless Chromium for the report tests (crates/snac-report/tests/report_html.rs):
# they open report.html, check its script ran without errors, and screenshot it.
command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)
export SNAC_CHROMIUM=/usr/bin/chromium
