#!/usr/bin/env bash
# Install (if needed) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export NO_ALBUMENTATIONS_UPDATE=1
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
