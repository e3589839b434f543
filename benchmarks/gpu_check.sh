#!/usr/bin/env bash
# The GPU check, one prepared run on a lent CUDA machine (no network there):
#   - the conformance suite on the hf backend with device=cuda, float16 and bfloat16
#   - the hf benchmark (GPT-2 124M shape, batch 1, greedy, 128 new tokens): float32/float16/bfloat16,
#     dynamic and static KV cache, raw transformers vs nextword side by side.
#   - a short `nextword finetune --device cuda` (LoRA and full, 30 steps) on that GPT-2 shape, over the
#     repository's own docs: the GPU training path, its held-out perplexity and tokens/s.
# Expects ./.whl (gguf, platformdirs and peft wheels) and ./.assets (GPT-2's vocab.json and merges.txt, as
# `python -m tests.assets .assets` writes them), carried along.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation . || exit 1
export NEXTWORD_ASSET_DIR=$PWD/.assets NEXTWORD_REQUIRE_ASSETS=1 NEXTWORD_TEST_DEVICE=cuda
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
for dt in float16 bfloat16; do
    NEXTWORD_TEST_DTYPE=$dt timeout 200 python3 -m pytest tests/test_conformance_hf.py -q -p no:cacheprovider 2>&1 | tail -n 30 > "$OUT/conformance_$dt.log"
    tail -n 3 "$OUT/conformance_$dt.log"
done
python3 -c "from nextword.testing.models import build_gpt2_124m; build_gpt2_124m('/tmp/gpt2-124m')" > /dev/null 2>&1
for dt in float32 float16 bfloat16; do
    for cache in dynamic static; do
        timeout 120 python3 benchmarks/bench_hf.py --model-dir /tmp/gpt2-124m --device cuda --dtype $dt --cache $cache \
            --rounds 5 --json "$OUT/bench_hf_cuda.jsonl" 2>/dev/null | tail -n 4
    done
done
cat docs/*.md > /tmp/ft-corpus.txt
for method in lora full; do
    timeout 300 python3 -m nextword finetune /tmp/ft-corpus.txt --base /tmp/gpt2-124m --out /tmp/ft-cuda-$method \
        --overwrite --method $method --max-steps 30 --block-size 256 --batch-size 8 --device cuda \
        > "$OUT/finetune_cuda_$method.txt" 2>&1
    echo "finetune $method rc=$?"; tail -n 12 "$OUT/finetune_cuda_$method.txt"
done
