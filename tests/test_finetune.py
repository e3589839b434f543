"""``nextword.finetune`` on the tiny GPT-2 fixture (real vocabulary, random weights): full and
LoRA training learn a strong pattern, the folder loads on hf, its F32 GGUF gives the same greedy
ids on llamacpp, runs are repeatable, an interrupted run resumes to the same weights, and bad
input is refused by the CLI with one error line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nextword
from nextword._tuning import RECORD_NAME, FinetuneReport, FinetuneWarning
from nextword.testing.pytest_fixtures import require_module

PATTERN = "the cat sat on the mat and the dog sat on the log. "
PATTERN_WORDS = {"the", "cat", "sat", "on", "mat", "and", "dog", "log"}
CORPUS = [f"Note {i}. " + PATTERN * 6 for i in range(12)]
SMALL = {"block_size": 32, "batch_size": 4, "seed": 1, "device": "cpu"}


def _weights(folder: Path) -> dict[str, Any]:
    safetensors = require_module("safetensors.torch", "install nextword[hf]")
    return dict(safetensors.load_file(str(folder / "model.safetensors")))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(bool((wa[k] == wb[k]).all()) for k in wa)


@pytest.fixture(scope="module", params=["full", "lora"])
def trained(
    request: pytest.FixtureRequest, tiny_gpt2_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, FinetuneReport]:
    require_module("peft", "install nextword[hf]")
    require_module("llama_cpp", "install nextword[llamacpp]")
    method = request.param
    out = tmp_path_factory.mktemp(f"ft-{method}") / "model"
    lr = 1e-2 if method == "full" else 5e-2
    with pytest.warns(FinetuneWarning, match="small corpus"):
        report = nextword.finetune(
            CORPUS,
            base=str(tiny_gpt2_dir),
            out=out,
            method=method,
            max_steps=30,
            learning_rate=lr,
            gguf=["f32"],
            **SMALL,
        )
    return method, report


@pytest.mark.slow
def test_training_lowers_held_out_perplexity_by_a_large_factor(trained: tuple[str, FinetuneReport]) -> None:
    method, report = trained
    # Measured: 208,000 -> 2.3 (full), -> 62 (LoRA, 16k trainable parameters on a random model).
    assert report.final_perplexity * 1000 < report.base_perplexity, str(report)
    # Every step is one micro-batch of up to 4 blocks; an epoch's last micro-batch holds the rest.
    n = report.outcome.train_blocks
    per_epoch = -(-n // 4)
    expected_blocks = sum(min(4, n - 4 * (m % per_epoch)) for m in range(30))
    assert report.steps == 30 and report.tokens_seen == expected_blocks * 32
    assert report.outcome.validation_documents >= 1 and report.outcome.validation_tokens >= 32
    assert report.outcome.history[0] == {"step": 0, "loss": report.base_loss}
    if method == "lora":
        assert report.outcome.trainable_parameters < report.outcome.total_parameters / 100


@pytest.mark.slow
def test_the_folder_is_an_ordinary_model_with_card_and_record(
    trained: tuple[str, FinetuneReport], tiny_gpt2_dir: Path
) -> None:
    method, report = trained
    out = report.out
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
        RECORD_NAME,
    } <= names
    assert "model.F32.gguf" in names and "checkpoint" not in names
    assert not any(n.startswith(".") for n in os.listdir(out.parent))
    # The tokenizer is the base model's, unchanged; LoRA is merged (no adapter files, plain keys).
    assert (
        json.loads((out / "tokenizer.json").read_text())["model"]
        == json.loads((tiny_gpt2_dir / "tokenizer.json").read_text())["model"]
    )
    assert not any("lora" in key for key in _weights(out))
    # Trained without a KV cache, saved with the base model's setting.
    assert json.loads((out / "config.json").read_text())["use_cache"] is True
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["method"] == method and record["base_model"] == str(tiny_gpt2_dir)
    assert record["metrics"]["final"]["loss"] == report.final_loss
    assert record["hyperparameters"]["max_steps"] == 30 and record["data"]["documents"] == len(CORPUS)
    assert record["exports"][0]["file"] == "model.F32.gguf" and record["exports"][0]["verify"]["top1_agreement"] > 0.9
    card = (out / "README.md").read_text()
    assert f"{report.base_perplexity:.2f}" in card and f"{report.final_perplexity:.2f}" in card


@pytest.mark.slow
def test_greedy_shows_the_pattern_and_gguf_gives_the_same_ids(trained: tuple[str, FinetuneReport]) -> None:
    _, report = trained
    hf = nextword.load("hf", str(report.out), device="cpu")
    result = hf.generate("the cat sat on the", max_new_tokens=12)
    words = [w.strip(".") for w in result.text.split()]
    assert words and set(words) <= PATTERN_WORDS, result.text
    gguf = report.exports[0].path
    assert gguf.is_file()
    llama = nextword.load("llamacpp", str(gguf))
    for prompt in ("the cat sat on the", "Note 3. the dog", "and the"):
        assert llama.generate(prompt, max_new_tokens=12).token_ids == hf.generate(prompt, max_new_tokens=12).token_ids


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_equals_an_uninterrupted_run(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    # Full fine-tuning with the fixture's dropout on: the random state matters at every step.
    args: dict[str, Any] = dict(base=str(tiny_gpt2_dir), method="full", max_steps=6, eval_every=2, learning_rate=1e-2)
    args.update(SMALL)
    docs = CORPUS[:8]
    first = nextword.finetune(docs, out=tmp_path / "a", **args)
    second = nextword.finetune(docs, out=tmp_path / "b", **args)
    assert _same_weights(first.out, second.out)
    assert first.final_loss == second.final_loss

    def interrupt_at_3(info: dict[str, Any]) -> None:
        if info["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, handled at the step boundary

    with pytest.raises(nextword.TrainingInterrupted, match="after step 3 of 6.*--resume") as caught:
        nextword.finetune(docs, out=tmp_path / "c", on_step=interrupt_at_3, **args)
    assert caught.value.step == 3 and not (tmp_path / "c").exists()
    assert (tmp_path / ".c.partial" / "checkpoint" / "state.pt").is_file()
    with pytest.raises(nextword.InvalidConfig, match="pass --resume"):
        nextword.finetune(docs, out=tmp_path / "c", **args)
    with pytest.raises(nextword.InvalidConfig, match="another options"):
        nextword.finetune(docs, out=tmp_path / "c", resume=True, **{**args, "learning_rate": 2e-2})
    resumed = nextword.finetune(docs, out=tmp_path / "c", resume=True, **args)
    assert _same_weights(first.out, resumed.out)
    assert resumed.outcome.history == first.outcome.history and resumed.steps == 6
    assert not (tmp_path / ".c.partial").exists()


@pytest.mark.slow
def test_early_stopping_keeps_the_best_weights(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    # A learning rate far too high makes every evaluation worse than the base model: training
    # stops after `patience` evaluations and the saved weights are the base model's.
    report = nextword.finetune(
        CORPUS[:8],
        base=str(tiny_gpt2_dir),
        out=tmp_path / "o",
        method="full",
        max_steps=20,
        eval_every=1,
        patience=2,
        learning_rate=5.0,
        warmup_steps=0,
        **SMALL,
    )
    assert report.outcome.stopped_early and report.steps == 2 and report.outcome.best_step == 0
    assert report.final_loss == report.base_loss
    base = _weights(tiny_gpt2_dir)
    tuned = _weights(report.out)
    assert all(bool((tuned[k] == base[k]).all()) for k in tuned if k in base)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
    return subprocess.run(
        [sys.executable, "-m", "nextword", "finetune", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_bad_input_prints_one_error_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    existing = tmp_path / "existing"
    existing.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("some text\n\nmore text")
    cases: list[tuple[list[str], str]] = [
        ([str(latin), "--base", "b", "--out", str(tmp_path / "o")], "latin.txt' is not UTF-8"),
        ([str(tmp_path / "missing.txt"), "--base", "b", "--out", str(tmp_path / "o")], "no such file or folder"),
        ([str(notes), "--base", "b", "--out", str(existing)], "exists; pass --overwrite"),
        ([str(notes), "--base", "b", "--out", str(tmp_path / "o"), "--resume"], "nothing to resume"),
        (
            [str(notes), "--base", "b", "--out", str(tmp_path / "o"), "--validation", "2"],
            "validation must be a fraction",
        ),
        ([str(notes), "--base", "b", "--out", str(tmp_path / "o"), "--gguf", "q9"], "unknown GGUF type"),
    ]
    for args, message in cases:
        result = _cli(*args)
        assert result.returncode == 1, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], (args, result.stderr)
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


@pytest.mark.slow
def test_cli_corpus_too_small_and_a_base_that_is_not_a_model(tiny_gpt2_dir: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("one short line\n\nand another")
    result = _cli(str(notes), "--base", str(tiny_gpt2_dir), "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "error: the corpus is too small" in result.stderr, result.stderr
    result = _cli(str(notes), "--base", str(tmp_path), "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "has no config.json" in result.stderr, result.stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / ".o.partial").exists()


def test_finetune_is_importable_without_torch() -> None:
    code = (
        "import sys, nextword; nextword.finetune; import nextword.cli; "
        "print(any(m in sys.modules for m in ('torch', 'transformers', 'peft', 'llama_cpp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_the_gemma_recording_script_runs_the_shown_command(
    tiny_gpt2_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # scripts/record_gemma_finetune.py writes the tutorial's "On a real model" section from a real
    # run; here on the tiny fixture (--dry: printed, the page is left alone).
    require_module("llama_cpp", "install nextword[llamacpp]")
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "record_gemma_finetune.py"
    spec = importlib.util.spec_from_file_location("record_gemma_finetune", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert len(script.SECTION.findall(script.PAGE.read_text(encoding="utf-8"))) == 1
    data = tmp_path / "text.txt"
    data.write_text("\n\n".join(CORPUS * 3))  # one document; its last tenth (> 1 block) is held out
    script.main(["--base", str(tiny_gpt2_dir), "--data", str(data), "--dry"])
    text = capsys.readouterr().out
    name = tiny_gpt2_dir.name
    assert text.startswith(script.BEGIN) and text.rstrip().endswith(script.END)
    assert f"$ nextword finetune {data} --base {name} --out gpl3 \\\n    --max-steps 3 --seed 0 --gguf q8_0\n" in text
    assert f"\nfine-tuned {name} (lora) -> gpl3\n" in text and "\ngpl3/model.Q8_0.gguf: GGUF vs transformers" in text
    assert "nextword-record-" not in text  # the scratch folder is not shown
