"""The model card (``README.md``) of an exported folder, in the Hugging Face Hub's format.

YAML front matter (``library_name``, ``pipeline_tag``, ``base_model``, ``tags``) for the Hub, then
what a user needs: the task, what was kept, the size, the *measured* validation and test metric
of the exported weights (those of ``nasprune_export.json``, never the search's estimates) and how
to load it, with and without nasprune.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

from nasprune.model_names import hub_model_id, local_folder_name

# Hub pipeline tags by task kind. transformers has no multiple-choice pipeline: the card says so.
_PIPELINE_TAGS = {"classification": "text-classification", "regression": "text-classification",
                  "multiple_choice": "multiple-choice", "causal_lm": "text-generation"}
# Their stock exports may keep fewer heads (head_dim is a config entry) and key/value heads.
_LLAMA_FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
_AUTO_CLASSES = {"multiple_choice": "AutoModelForMultipleChoice", "causal_lm": "AutoModelForCausalLM"}


def _front_matter(meta: Mapping[str, Any]) -> str:
    fields: dict[str, Any] = {
        "library_name": "transformers",
        "pipeline_tag": _PIPELINE_TAGS.get(meta.get("task_kind", ""), "text-classification"),
    }
    # The Hub rejects a base_model that is not a Hub id: a local folder's path is left out.
    base_model = hub_model_id(meta.get("base_model") or meta.get("source_model"))
    if base_model:
        fields["base_model"] = base_model
    tags = ["nasprune", "pruned", "structured-pruning", str(meta.get("family", ""))]
    if meta.get("task"):
        tags.append(str(meta["task"]))
    fields["tags"] = [t for t in dict.fromkeys(tags) if t]
    # JSON scalars are valid YAML; lists as YAML block sequences, the Hub's own style.
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"- {json.dumps(item)}" for item in value]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines + ["---", ""])


def _metric_line(meta: Mapping[str, Any], metric: str) -> str:
    if not meta.get("evaluated") or "valid_error" not in meta:
        return (
            "The exported weights were **not measured** (`--no-evaluate`): this card quotes no "
            "metric.\n"
        )
    evaluation = meta.get("evaluation") or {}
    # A language model is measured on packed blocks of max_seq_length tokens, not on examples.
    unit = "blocks" if meta.get("task") == "lm" else "examples"
    examples = (
        f" ({evaluation['validation_examples']} validation and {evaluation['test_examples']} test "
        f"{unit}, max length {evaluation['max_seq_length']})"
        if isinstance(evaluation, Mapping) and "validation_examples" in evaluation else ""
    )
    lines = [
        f"Measured on the exported weights, loaded back with `from_pretrained`{examples}:\n",
        f"| split | {metric} | error (1 − {metric}) |",
        "|:---|---:|---:|",
    ]
    for split, key in (("validation", "valid_error"), ("test", "test_error")):
        error = float(meta[key])
        lines.append(f"| {split} | {1 - error:.4f} | {error:.4f} |")
    recovery = meta.get("recovery")
    if recovery:
        lines.append(
            f"\nThese are after recovery training ({recovery['epochs']} epoch(s), loss {recovery['loss']}); "
            f"before it the validation {metric} was {1 - float(recovery['valid_error_before']):.4f}."
        )
    return "\n".join(lines) + "\n"


def _usage(meta: Mapping[str, Any], repo: str) -> str:
    task_kind = meta.get("task_kind", "classification")
    auto = _AUTO_CLASSES.get(task_kind, "AutoModelForSequenceClassification")
    stock = meta.get("format") == "stock"
    remote = "" if stock else ", trust_remote_code=True"
    version = meta.get("transformers_version", "")
    if stock:
        kept = (
            "every kept layer keeps the same numbers of query heads, key/value heads and MLP units"
            if meta.get("family") in _LLAMA_FAMILIES
            else "every kept layer keeps all attention heads and the same FFN width"
        )
        intro = (
            f"This folder is a stock `{meta.get('architecture', auto)}` (`model_type: {meta.get('family')}`): "
            f"{kept}, so it needs no custom "
            f"code: it loads as any {meta.get('family')} model does, also in tools that support only stock "
            "models.\n"
        )
    else:
        why = (
            "its layers differ in width, or a layer keeps no heads or no units"
            if meta.get("family") in _LLAMA_FAMILIES
            else "a layer keeps fewer attention heads than the source model, or the layers differ in width"
        )
        intro = (
            f"Stock classes cannot hold it ({why}), so the folder carries its own configuration and "
            "modeling files. With nasprune installed, `import nasprune` registers the classes; without "
            "it, pass `trust_remote_code=True`.\n"
        )
    code = [
        "```python",
        f"from transformers import AutoModel, AutoTokenizer, {auto}",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
        f'model = {auto}.from_pretrained("{repo}"{remote})',
        f'encoder = AutoModel.from_pretrained("{repo}"{remote})  # the encoder alone',
    ]
    if task_kind == "causal_lm":
        code[-1] = f'decoder = AutoModel.from_pretrained("{repo}"{remote})  # the decoder alone'
        code += [
            "",
            'inputs = tokenizer("The film was", return_tensors="pt")',
            "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0]))",
            "",
            "from transformers import pipeline",
            "",
            f'generator = pipeline("text-generation", model="{repo}"{remote})',
        ]
    elif task_kind != "multiple_choice":
        code += [
            "",
            "from transformers import pipeline",
            "",
            f'classifier = pipeline("text-classification", model="{repo}"{remote})',
            'print(classifier("A gripping, beautifully acted film."))',
        ]
    code.append("```")
    notes = [
        "",
        f"Requirements: `transformers` {version and f'>= 5 (written with {version})' or '>= 5'}"
        + (", and PyTorch." if stock else ", and PyTorch; the custom code imports only torch, transformers and "
           "huggingface_hub."),
    ]
    if task_kind == "multiple_choice":
        notes.append(
            "transformers has no multiple-choice pipeline: call the model on `[batch, choices, length]` inputs."
        )
    return intro + "\n" + "\n".join(code + notes) + "\n"


def model_card(meta: Mapping[str, Any], repo: str = ".") -> str:
    """The ``README.md`` of an exported folder from its ``nasprune_export.json`` contents ``meta``.

    :param repo: how the usage snippet names the model (the folder, or a Hub repository id)
    """
    metric = str(meta.get("metric") or "metric")
    heads, units = list(meta["heads_per_layer"]), list(meta["units_per_layer"])
    kept = list(meta["kept_layers"])
    source = meta.get("base_model") or meta.get("source_model")
    hub_id = hub_model_id(source)
    origin = f"`{hub_id}`" if hub_id else f"model loaded from a local folder (`{local_folder_name(source)}`)"
    task = meta.get("task") or meta.get("task_kind", "")
    size = [f"| parameters | {meta['params']:,} | {meta['relative_params']:.1%} |"]
    if "macs" in meta:
        size.append(
            f"| MACs per example at length {meta['macs_seq_length']} | {meta['macs']:,} | {meta['relative_macs']:.1%} |"
        )
    body = [
        f"# Pruned {meta['family']} for {task}",
        "",
        f"A structurally pruned {origin}, cut out of a nasprune super-network (weight-sharing neural "
        f"architecture search) for the task **{task}** ({meta.get('task_kind', '')}). It keeps "
        f"{len(kept)} of {len(heads)} layers.",
        "",
        "| size | this model | relative to the full model |",
        "|:---|---:|---:|",
        *size,
        "",
        _metric_line(meta, metric),
        "## What was kept",
        "",
        f"- source layers kept: {kept}",
        f"- attention heads per source layer: {heads}",
        f"- FFN units per source layer: {units}",
        "",
        "Layers that keep no heads skip attention; layers that keep no units skip the FFN.",
        "",
        "## How to load it",
        "",
        _usage(meta, repo),
        "`nasprune_export.json` records the sub-network, the search trial it came from and these "
        "measurements.",
    ]
    return _front_matter(meta) + "\n" + "\n".join(body) + "\n"


__all__ = ["model_card"]
