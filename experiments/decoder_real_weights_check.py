"""Check a real pre-trained Llama-family checkpoint against nasprune's super-network, without training.

1. The full sub-network's next-token logits against HF's own forward (eager and SDPA attention),
   on real sentences batched with right padding (compared at the real tokens) and one unpadded.
2. Pruned sub-networks (whole KV groups, query heads within groups, FFN units, whole blocks,
   random non-prefix masks): their logits in both super-network modes ("slice" runs the kept rows,
   "mask" multiplies the full weights by 0/1) against HF's forward on a copy of the model whose
   output-projection columns of the dropped heads and units are zeroed, which computes the same
   function by a different route. Also their next-token loss on the sentences, exact parameter
   counts and MACs relative to the full model.
3. A sub-network that breaks the GQA rule (unequal heads in two non-empty groups) is refused.

    python experiments/decoder_real_weights_check.py --model /work/runs/smollm2-135m \
        --output-dir experiments/results/smollm2_real
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from nasprune.counting import ParameterCounter, relative_macs
from nasprune.data.rotten_tomatoes import load_rotten_tomatoes_table
from nasprune.errors import NaspruneError
from nasprune.files import write_csv_atomic, write_json_atomic
from nasprune.subnet import ModelShape, SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.supernet.base import load_hf_model

MAC_LENGTH = 128  # sequence length at which relative MACs are reported


def real_sentences(count: int) -> list[str]:
    # Fixed rows of the offline Rotten Tomatoes snippets, spread over the table, plus two plain facts.
    table = load_rotten_tomatoes_table()
    rows = np.linspace(0, len(table) - 1, count - 2).astype(int)
    return [
        "The capital of France is Paris, and the capital of Italy is Rome.",
        "Water boils at one hundred degrees Celsius at sea level.",
    ] + [str(table["text"].iloc[i]) for i in rows]


def subnetworks(shape: ModelShape, seed: int) -> dict[str, SubNetwork]:
    layers, groups, group_size, units = shape.num_layers, shape.kv_heads, shape.group_size, shape.intermediate_size
    full_counts = (np.full(layers, groups), np.full(layers, group_size), np.full(layers, units))

    def grouped(g, c, u) -> SubNetwork:
        return SubNetwork.from_group_counts(shape, g, c, u)

    mixed_g, mixed_c, mixed_u = (x.copy() for x in full_counts)
    mixed_g[10:20], mixed_c[10:20], mixed_u[10:20] = groups - 1, max(group_size - 1, 1), units * 2 // 3
    mixed_g[20:], mixed_u[20:] = 1, units // 2
    mixed_g[25] = 0  # no attention block in layer 25
    mixed_u[27] = 0  # no FFN block in layer 27
    mixed_g[28], mixed_u[28] = 0, 0  # layer 28 dropped entirely

    rng = np.random.default_rng(seed)
    head_mask = np.zeros((layers, shape.num_heads), bool)
    unit_mask = np.zeros((layers, units), bool)
    for layer in range(layers):
        kept_groups = rng.choice(groups, size=rng.integers(1, groups + 1), replace=False)
        per_group = rng.integers(1, group_size + 1)
        for group in kept_groups:
            heads = rng.choice(group_size, size=per_group, replace=False)
            head_mask[layer, group * group_size + heads] = True
        unit_mask[layer, rng.choice(units, size=rng.integers(units // 4, units + 1), replace=False)] = True

    return {
        "full": SubNetwork.full(shape),
        "drop_last_kv_group_all_layers": grouped(np.full(layers, groups - 1), full_counts[1], full_counts[2]),
        f"{group_size - 1}_heads_per_group_all_layers": grouped(
            full_counts[0], np.full(layers, group_size - 1), full_counts[2]
        ),
        "half_units_layers_10_29": grouped(
            full_counts[0], full_counts[1], np.where(np.arange(layers) >= 10, units // 2, units)
        ),
        "mixed_groups_heads_units_dropped_blocks": grouped(mixed_g, mixed_c, mixed_u),
        "random_non_prefix": SubNetwork(head_mask, unit_mask),
    }


def zeroed_reference(reference, originals, subnet: SubNetwork, head_dim: int) -> None:
    """Zero the output-projection columns of ``subnet``'s dropped heads and units in ``reference``."""
    with torch.no_grad():
        for index, layer in enumerate(reference.model.layers):
            o_proj, down_proj = originals[index]
            layer.self_attn.o_proj.weight.copy_(o_proj)
            layer.mlp.down_proj.weight.copy_(down_proj)
            dropped_heads = np.flatnonzero(~subnet.head_mask[index])
            for head in dropped_heads:
                layer.self_attn.o_proj.weight[:, head * head_dim:(head + 1) * head_dim] = 0
            layer.mlp.down_proj.weight[:, torch.from_numpy(~subnet.unit_mask[index])] = 0


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> float:
    targets = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100).item()


def max_diff_at_tokens(a: torch.Tensor, b: torch.Tensor, attention_mask: torch.Tensor) -> float:
    keep = attention_mask.bool()
    return (a[keep] - b[keep]).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local Llama-family causal-LM folder (safetensors)")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                        help="float64 tells rounding apart from real differences")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="check only these pruned sub-networks (repeatable; default: all)")
    parser.add_argument("--reference-attention", default="eager", choices=("eager", "sdpa"),
                        help="attention of the zeroed HF reference; HF's eager path takes the softmax in "
                             "float32 even for a float64 model, SDPA does not")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    suffix = "" if args.dtype == "float32" else f"_{args.dtype}"
    suffix += "" if args.reference_attention == "eager" else f"_{args.reference_attention}_reference"

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    sentences = real_sentences(args.sentences)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    single = tokenizer(sentences[0], return_tensors="pt")

    hf = load_hf_model(args.model, "causal_lm", attn_implementation="eager", dtype=getattr(torch, args.dtype)).eval()
    supernet = SuperNetwork(hf).eval()
    shape = supernet.shape
    summary: dict = {
        "model": str(args.model),
        "model_class": type(hf).__name__,
        "dtype": args.dtype,
        "shape": {"layers": shape.num_layers, "heads": shape.num_heads, "kv_heads": shape.kv_heads,
                  "head_dim": shape.head_dim, "units": shape.intermediate_size, "causal": shape.causal},
        "sentences": sentences,
        "tokens_per_sentence": mask.sum(1).tolist(),
    }

    with torch.no_grad():
        started = time.perf_counter()
        hf_eager = hf(input_ids=ids, attention_mask=mask).logits
        hf_seconds = time.perf_counter() - started
        hf_single = hf(**single).logits
        hf.set_attn_implementation("sdpa")
        hf_sdpa = hf(input_ids=ids, attention_mask=mask).logits
        hf.set_attn_implementation("eager")
        started = time.perf_counter()
        ours = supernet(ids, mask)
        ours_seconds = time.perf_counter() - started
        ours_single = supernet(single["input_ids"])  # no padding mask: SDPA is_causal path
        supernet.mode = "mask"
        ours_mask_mode = supernet(ids, mask)
        supernet.mode = "slice"
    summary["full_vs_hf"] = {
        "max_abs_diff_vs_hf_eager_padded_batch": max_diff_at_tokens(ours, hf_eager, mask),
        "max_abs_diff_vs_hf_sdpa_padded_batch": max_diff_at_tokens(ours, hf_sdpa, mask),
        "max_abs_diff_mask_mode_vs_hf_eager": max_diff_at_tokens(ours_mask_mode, hf_eager, mask),
        "max_abs_diff_vs_hf_eager_unpadded": (ours_single - hf_single).abs().max().item(),
        "max_abs_logit": hf_eager[mask.bool()].abs().max().item(),
        "same_argmax_fraction": (ours.argmax(-1) == hf_eager.argmax(-1))[mask.bool()].float().mean().item(),
        "loss_hf": next_token_loss(hf_eager, ids, mask),
        "loss_nasprune_full": next_token_loss(ours, ids, mask),
        "seconds_forward_hf_eager": hf_seconds,
        "seconds_forward_nasprune_full": ours_seconds,
    }
    print("full sub-network vs HF:", summary["full_vs_hf"])

    reference = copy.deepcopy(hf)
    reference.set_attn_implementation(args.reference_attention)
    summary["pruned_reference_attention"] = args.reference_attention
    originals = [
        (layer.self_attn.o_proj.weight.detach().clone(), layer.mlp.down_proj.weight.detach().clone())
        for layer in reference.model.layers
    ]
    counter = ParameterCounter(hf)
    rows = []
    for name, subnet in subnetworks(shape, args.seed).items():
        if args.only and name not in args.only:
            continue
        zeroed_reference(reference, originals, subnet, shape.head_dim)
        with torch.no_grad():
            expected = reference(input_ids=ids, attention_mask=mask).logits
            started = time.perf_counter()
            with supernet.select(subnet):
                sliced = supernet(ids, mask)
                seconds = time.perf_counter() - started
                supernet.mode = "mask"
                masked = supernet(ids, mask)
                supernet.mode = "slice"
        loss = next_token_loss(sliced, ids, mask)
        rows.append({
            "subnetwork": name,
            "query_heads": int(subnet.head_mask.sum()),
            "kv_heads": int(shape.kv_mask(subnet.head_mask).sum()),
            "units": int(subnet.unit_mask.sum()),
            "params": counter.count(subnet),
            "relative_params": round(counter.relative(subnet), 4),
            "relative_layer_macs_T128": round(relative_macs(subnet, shape, MAC_LENGTH), 4),
            "loss": round(loss, 4),
            "perplexity": round(math.exp(loss), 2),
            "max_abs_diff_slice_vs_zeroed_hf": max_diff_at_tokens(sliced, expected, mask),
            "max_abs_diff_mask_vs_zeroed_hf": max_diff_at_tokens(masked, expected, mask),
            "max_abs_logit": expected[mask.bool()].abs().max().item(),
            "seconds_forward_slice": round(seconds, 3),
        })
        print(rows[-1])
    write_csv_atomic(pd.DataFrame(rows), output / f"subnetworks_no_training{suffix}.csv")

    invalid = SubNetwork.full(shape).head_mask.copy()
    invalid[3, shape.group_size - 1] = False  # group 0 of layer 3 keeps one head fewer than the others
    try:
        supernet.check(SubNetwork(invalid, SubNetwork.full(shape).unit_mask))
        summary["unequal_groups_refused"] = "NOT refused"
    except NaspruneError as error:
        summary["unequal_groups_refused"] = str(error)
    print("unequal groups:", summary["unequal_groups_refused"])
    write_json_atomic(summary, output / f"full_vs_hf{suffix}.json")


if __name__ == "__main__":
    main()
