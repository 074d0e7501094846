#!/usr/bin/env python3
"""Build a tiny random-weight Llama model that vLLM (CPU) can serve.

Usage::

    python scripts/make_tiny_model.py OUT_DIR [--force]

Nothing is downloaded: the byte-level BPE tokenizer (512 tokens) is trained
on a few built-in sentences with the ``tokenizers`` library and the model is
a freshly initialised ``LlamaForCausalLM`` (hidden 128, 2 heads of 64, 2
layers) with a fixed seed, so the output is deterministic. The result is a
complete Hugging Face model directory (config.json, model.safetensors,
generation_config.json, tokenizer.json, tokenizer_config.json with bos/eos and
a chat template) usable as ``--model OUT_DIR``.

Run it with a Python that has ``torch``, ``transformers`` and ``tokenizers``
(the vLLM venv made by scripts/setup-vllm.sh has them). If OUT_DIR already
holds a complete model (marker file ``.tiny-model-complete``) it does nothing.
The model is built in a sibling temporary directory and renamed into place,
so concurrent runs never see a half-written directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

MARKER = ".tiny-model-complete"
SPEC_VERSION = 1  # bump when the model below changes, to invalidate caches
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
)

SEED = 1234
VOCAB_SIZE = 512
HIDDEN_SIZE = 128
NUM_HEADS = 2  # head_dim 64: vLLM's CPU attention rejects small head sizes
NUM_LAYERS = 2
INTERMEDIATE_SIZE = 256
MAX_POSITIONS = 1024

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"

# A simple role-tagged template; bos is part of the template because vLLM
# renders chat prompts without adding special tokens again.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! This is a tiny language model used for integration tests.",
    "Machine learning operations need structured logging, metrics and traces.",
    "Every request carries an identifier so that logs can be correlated.",
    "The server received a request, generated some tokens and returned a response.",
    "Once upon a time there was a small model that lived on a CPU.",
    "It answered questions about the weather, numbers, colours and animals.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 1000 2024 3.14159",
    "Colours: red, green, blue, yellow, purple, orange, black, white, grey.",
    "Animals: cat, dog, horse, cow, sheep, bird, fish, mouse, lion, tiger.",
    "What is the capital of France? The capital of France is Paris.",
    "Please summarise the following paragraph in one short sentence.",
    "Latency, throughput, tokens per second and time to first token.",
    "system user assistant tool function message content role name",
    '{"model": "tiny", "prompt": "Hello", "max_tokens": 16}',
    "def main():\n    print('hello, world')\n    return 0\n",
    "ERROR WARNING INFO DEBUG trace span event exception stack",
    "Monday Tuesday Wednesday Thursday Friday Saturday Sunday",
    "January February March April May June July August September October",
    "The rain in Spain stays mainly in the plain, said the professor.",
]


def is_complete(out_dir: Path) -> bool:
    """True if ``out_dir`` holds a model built by this script's current spec."""
    marker = out_dir / MARKER
    if not marker.is_file() or not all((out_dir / f).is_file() for f in REQUIRED_FILES):
        return False
    try:
        return json.loads(marker.read_text()).get("spec_version") == SPEC_VERSION
    except (OSError, ValueError):
        return False


def build_tokenizer() -> Any:
    """Train the byte-level BPE tokenizer and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=1,
        special_tokens=[BOS, EOS, UNK, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so the merge statistics are stable and there are
    # enough merges to fill the vocabulary.
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, bos_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        chat_template=CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
        clean_up_tokenization_spaces=False,
    )


def build(out_dir: Path) -> None:
    """Write the tokenizer and a random-weight Llama into ``out_dir``."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    tokenizer = build_tokenizer()
    vocab_size = len(tokenizer)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=HIDDEN_SIZE,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=NUM_LAYERS,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        head_dim=HIDDEN_SIZE // NUM_HEADS,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    (out_dir / MARKER).write_text(
        json.dumps({"spec_version": SPEC_VERSION, "seed": SEED, "vocab_size": vocab_size}) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="directory to create the model in")
    parser.add_argument("--force", action="store_true", help="rebuild even if complete")
    args = parser.parse_args(argv)
    out_dir: Path = args.out_dir.resolve()

    if is_complete(out_dir) and not args.force:
        print(f"tiny model already present in {out_dir}", file=sys.stderr)
        return 0

    # Keep transformers from trying to reach the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        build(tmp)
        if out_dir.exists():
            if is_complete(out_dir) and not args.force:  # another process won the race
                return 0
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"tiny model written to {out_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
