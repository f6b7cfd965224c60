"""Tiny random decoder models and a tiny language for the decoder tests: a word-level tokenizer
without a pad token (as GPT-2's and Llama's), tiny Llama (grouped-query attention), GPT-2 and
GPT-NeoX configs over its words, and text files of its sentences."""

import json

import numpy as np
import torch

#: The tiny language: a few sentences of a fixed grammar, so a model can learn something in one epoch.
WORDS = ["<unk>", "<eos>", "the", "a", "cat", "dog", "bird", "sat", "ran", "sang", "on", "by", "mat", "tree",
         "good", "great", "fine", "superb", "bad", "awful", "poor", "dull", "movie", "plot"]


def make_tokenizer():
    """A word-level fast tokenizer with an end-of-sequence token and, like GPT-2 and Llama, no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>")


def llama_config(**overrides):
    from transformers import LlamaConfig

    settings = dict(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=False, eos_token_id=1,
        bos_token_id=None, pad_token_id=None,
    )
    return LlamaConfig(**{**settings, **overrides})


def decoder_config(family: str):
    """A tiny random config of a decoder family, over :data:`WORDS`."""
    from transformers import GPT2Config, GPTNeoXConfig

    if family == "llama":
        return llama_config()
    if family == "gpt2":
        return GPT2Config(vocab_size=len(WORDS), n_embd=32, n_layer=2, n_head=4, n_positions=64, eos_token_id=1,
                          bos_token_id=1, pad_token_id=None)
    return GPTNeoXConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.5, eos_token_id=1,
                         bos_token_id=1, pad_token_id=None, tie_word_embeddings=False)


def write_tiny_decoder(path, family: str = "llama", task: str = "causal_lm", seed: int = 0) -> None:
    """A tiny random decoder (Llama: grouped-query attention, 4 heads on 2 KV heads) and :func:`make_tokenizer`."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    auto = AutoModelForCausalLM if task == "causal_lm" else AutoModelForSequenceClassification
    auto.from_config(decoder_config(family)).save_pretrained(path)
    make_tokenizer().save_pretrained(path)


def decoder_families() -> list[str]:
    """The decoder families nasprune runs (GPT-NeoX only once its adapter is registered)."""
    from nasprune.supernet import supported_families

    return [family for family in ("llama", "gpt2", "gpt_neox") if family in supported_families()]


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    subjects, verbs, places = ["cat", "dog", "bird"], ["sat", "ran", "sang"], ["mat", "tree"]
    return [
        f"{rng.choice(['the', 'a'])} {rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(['on', 'by'])} "
        f"the {rng.choice(places)}"
        for _ in range(n)
    ]


def write_text(path, n: int, seed: int) -> None:
    path.write_text("\n".join(sentences(n, seed)) + "\n")


def write_jsonl(path, n: int, seed: int) -> None:
    path.write_text("".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in enumerate(sentences(n, seed))))
