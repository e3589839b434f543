#!/usr/bin/env bash
# Build llama.cpp's own C++ server (`llama-server`) from the vendor/llama.cpp sources inside the
# sdist of the installed llama-cpp-python, so benchmarks compare nextword with the exact engine
# version it wraps.  Cached: a second run prints the binary's path at once.
#
#   benchmarks/build_llama_server.sh [python]     # python defaults to .venv/bin/python or python3
#
# Prints the path of the llama-server binary on its last line.  The binary needs the shared
# libraries beside it: run it with LD_LIBRARY_PATH="$(dirname "$binary")".
# Takes ~25 minutes on 2 cores; run it niced in the background (nice -n 19 ... > log 2>&1 &).
set -euo pipefail

python="${1:-}"
if [[ -z "$python" ]]; then
    if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
version="$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
cache="${NEXTWORD_LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nextword/llama-server}/$version"
binary="$cache/build/bin/llama-server"
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi

mkdir -p "$cache"
sdist="$(ls "$cache"/llama_cpp_python-"$version".tar.gz 2>/dev/null || true)"
if [[ -z "$sdist" ]]; then
    "$python" -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$version" -d "$cache" >&2
    sdist="$(ls "$cache"/llama_cpp_python-"$version".tar.gz)"
fi
if [[ ! -d "$cache/src" ]]; then
    mkdir -p "$cache/src.tmp"
    tar -xzf "$sdist" -C "$cache/src.tmp" --strip-components=1
    mv "$cache/src.tmp" "$cache/src"
fi

jobs="${LLAMA_SERVER_BUILD_JOBS:-$(nproc)}"
cmake -S "$cache/src/vendor/llama.cpp" -B "$cache/build" \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF >&2
cmake --build "$cache/build" --config Release --target llama-server -j "$jobs" >&2
test -x "$binary"
echo "$binary"
