"""What the rewiring and the super-network training each did to searched LM sub-networks.

For the sub-networks of a `nasprune search --task lm` results folder (its Pareto set, or the trial
ids given), this measures the next-token loss and perplexity on the validation blocks that the
search used, in three versions of the model:

* ``original``: the pre-trained model as it was (heads and units in their original order, so the
  first-k sub-networks keep arbitrary ones),
* ``rewired``: the same weights with the checkpoint's rewiring permutation applied (a function-
  preserving reordering by importance), no training,
* ``trained``: the trained super-network checkpoint (rewired, then trained); this column should
  equal the search's own numbers, which checks that the blocks are the same ones.

    python experiments/decoder_lm_ablation.py --base-model /work/runs/smollm2-135m \
        --checkpoint /work/runs/smollm2-ws/supernet --results /work/runs/smollm2-ws/search \
        --output experiments/results/smollm2_real/ablation.csv
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from nasprune.checkpoint import resolve_checkpoint
from nasprune.counting import ParameterCounter, relative_macs
from nasprune.data.lm import load_text_files, pack_blocks
from nasprune.export.picking import SearchResults, subnet_from_row
from nasprune.files import write_csv_atomic
from nasprune.rewiring import Permutation, apply_permutation
from nasprune.subnet import SubNetwork
from nasprune.supernet import SuperNetwork
from nasprune.supernet.base import load_hf_model


def mean_next_token_loss(supernet: SuperNetwork, blocks: torch.Tensor, batch_size: int) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(blocks), batch_size):
            ids = blocks[start:start + batch_size]
            logits = supernet(ids)
            total += F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="sum").item()
            count += ids[:, 1:].numel()
    return total / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True, help="the pre-trained model the super-network started from")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--trials", default="pareto", help="'pareto' or comma-separated trial ids")
    parser.add_argument("--uniform", action="append", default=[], metavar="G,C,U",
                        help="also a sub-network keeping in every layer G key/value groups of C query heads "
                             "and U units (repeatable)")
    parser.add_argument("--max-eval-samples", type=int, default=None, help="default: the search's")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", required=True, help="a CSV file")
    args = parser.parse_args()

    checkpoint = resolve_checkpoint(args.checkpoint)
    info = json.loads((checkpoint / "nasprune.json").read_text())
    results = SearchResults.load(args.results)
    data = info["data_options"]
    cap = args.max_eval_samples or results.summary.get("data_options", data)["max_eval_samples"]
    files = {split: data[f"{split}_file"] for split in ("train", "validation", "test")}
    _, documents = load_text_files(files, data["text_column"], data["seed"])
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    blocks = torch.tensor(pack_blocks(documents["validation"], tokenizer, info["max_seq_length"], cap, data["seed"],
                                      "validation")["input_ids"])

    table = results.table
    if args.trials == "pareto":
        rows = table[table["pareto"].astype(bool)] if "pareto" in table.columns else table
    else:
        rows = table.set_index("trial_id").loc[[int(t) for t in args.trials.split(",")]].reset_index()
    subnets = {"full": None} | {f"trial {int(row['trial_id'])}": subnet_from_row(row) for _, row in rows.iterrows()}

    models = {
        "original": SuperNetwork(load_hf_model(args.base_model, "causal_lm")).eval(),
        "rewired": SuperNetwork(load_hf_model(args.base_model, "causal_lm")).eval(),
        "trained": SuperNetwork(load_hf_model(str(checkpoint), "causal_lm")).eval(),
    }
    apply_permutation(models["rewired"], Permutation.from_dict(info["rewiring"]))
    shape = models["original"].shape
    for spec in args.uniform:
        groups, per_group, units = (int(x) for x in spec.split(","))
        layers = shape.num_layers
        subnets[f"uniform {groups}x{per_group} heads, {units} units"] = SubNetwork.from_group_counts(
            shape, [groups] * layers, [per_group] * layers, [units] * layers)
    counter = ParameterCounter(models["original"])

    records = []
    for name, subnet in subnets.items():
        record = {"subnetwork": name, "validation_blocks": len(blocks), "block_size": blocks.shape[1]}
        for version, supernet in models.items():
            started = time.perf_counter()
            with supernet.select(subnet):
                loss = mean_next_token_loss(supernet, blocks, args.batch_size)
            record[f"{version}_loss"] = round(loss, 4)
            record[f"{version}_perplexity"] = round(math.exp(min(loss, 700.0)), 2)
            record[f"{version}_seconds"] = round(time.perf_counter() - started, 1)
        if subnet is not None:
            record["relative_params"] = round(counter.relative(subnet), 4)
            record["relative_macs"] = round(relative_macs(subnet, shape, blocks.shape[1]), 4)
        if name.startswith("trial "):
            row = rows[rows["trial_id"] == int(name.split()[1])].iloc[0]
            record["search_loss"] = round(float(row["valid_error"]) * math.log(results.summary["vocab_size"]), 4)
        records.append(record)
        print(record, flush=True)
    write_csv_atomic(pd.DataFrame(records), Path(args.output))


if __name__ == "__main__":
    main()
