"""A randomly initialised CLIP of the real architecture, saved with an offline tokenizer and its processor.

Tests use a tiny one; bench/clip.py uses ViT-B/32's vision dimensions. Both load it through the path a
user's model folder takes.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any


def save_random_clip(folder: Path, vision: dict[str, Any], text: dict[str, Any], projection_dim: int,
                     image_size: int) -> Path:
    import torch
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = sorted(set(string.ascii_lowercase + string.digits + " .,!?'-"))
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": len(chars) + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1}
    special = {"bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"],
               "pad_token_id": vocab["<|endoftext|>"]}
    config = CLIPConfig(text_config=dict(vocab_size=len(vocab), max_position_embeddings=77, **text, **special),
                        vision_config=dict(image_size=image_size, **vision), projection_dim=projection_dim)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    image_processor = getattr(transformers, "CLIPImageProcessorPil", transformers.CLIPImageProcessor)
    processor = CLIPProcessor(
        image_processor=image_processor(size={"shortest_edge": image_size},
                                        crop_size={"height": image_size, "width": image_size}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[]))
    processor.save_pretrained(folder)
    return folder
