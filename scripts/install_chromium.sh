#!/usr/bin/env bash
# Install headless Chromium for the browser tests (tests/test_reports.py, marker "browser") where apt-get can:
# run_tests.sh calls this on CI (CI=true). Quiet, and never fails: without Chromium those tests are skipped.
if command -v chromium >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    exit 0
fi
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || exit 0
    sudo_cmd=(sudo -n)
fi
if ! { "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1; then
    echo "note: could not install chromium; the browser tests will be skipped" >&2
fi
exit 0
