#!/usr/bin/env bash
# Install yolo-asff and its test tools into a virtual environment (.venv by default).
#   PYTHON=python3.11 VENV=.venv TORCH_PACKAGES="torch torchvision" bash scripts/install.sh
# TORCH_PACKAGES lets users pick another PyTorch build (e.g. a CUDA wheel index) for their machine.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_PACKAGES=${TORCH_PACKAGES:-"torch==2.14.1 torchvision==0.29.1"}
PIP_FLAGS=(--quiet --disable-pip-version-check)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, torchvision" >/dev/null 2>&1; then
  echo "[install] installing $TORCH_PACKAGES (a few GB; takes a minute or more)"
  # shellcheck disable=SC2086
  "$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" $TORCH_PACKAGES
fi
echo "[install] installing yolo-asff (editable) with its test extras"
"$VENV/bin/python" -m pip install "${PIP_FLAGS[@]}" -e ".[test]"
"$VENV/bin/python" -c "import yolo_asff, torch; print(f'[install] yolo-asff {yolo_asff.__version__}, torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
