"""``clip:`` — CLIP models through transformers: images, or text in the same space.

``clip:openai/clip-vit-base-patch32`` (a hub name) or ``clip:/path/to/folder`` (a folder saved with
``save_pretrained``, holding the model and its processor). With ``input=image`` the encoder reads
image files; decoding and preprocessing run in worker threads ahead of the model, so the model is
the bottleneck. Queries (``featctl neighbors --text``) always go through the text tower.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from featctl.encoders.base import Answer, StreamingEncoder, choice, positive_int
from featctl.encoders.sentence_transformers import folder_fingerprint
from featctl.errors import EncoderLoadError, first_line

MISSING_FILE = "missing file"
NOT_AN_IMAGE = "not an image"
TRUNCATED = "truncated image"

log = logging.getLogger(__name__)


class CLIPEncoder(StreamingEncoder):
    """Image or text features of a CLIP model, L2-normalised (cosine = inner product)."""

    prefix = "clip"
    inputs: ClassVar[tuple[str, ...]] = ("text", "image")
    commit_each_answer = False
    options: ClassVar = {"input": choice("text", "image"), "batch_size": positive_int, "device": str,
                         "workers": positive_int}

    def __init__(self, model: str, *, input: str = "text", batch_size: int = 32, device: str = "auto",
                 workers: int | None = None) -> None:
        self.location = os.path.abspath(model) if os.path.isdir(model) else model
        self.input, self.batch_size, self.device_name = input, batch_size, device
        self.workers = workers or min(4, os.cpu_count() or 1)
        revision = folder_fingerprint(self.location) if os.path.isdir(self.location) else None
        self.recipe = {"encoder": "clip", "model": self.location, "revision": revision, "input": input,
                       "normalize": True}
        self._model: Any = None
        self._processor: Any = None

    @property
    def modality(self) -> str:  # type: ignore[override]
        return self.input

    @property
    def dim(self) -> int:  # type: ignore[override]
        return int(self._load()[0].config.projection_dim)

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            try:
                import torch
                from transformers import CLIPModel, CLIPProcessor
            except ImportError as exc:
                raise EncoderLoadError(f"encoder 'clip:' needs {exc.name}; pip install 'featctl[clip]'") from None
            try:
                processor = CLIPProcessor.from_pretrained(self.location)
                model = CLIPModel.from_pretrained(self.location)
            except Exception as exc:  # noqa: BLE001 - any loading failure becomes one line
                raise EncoderLoadError(f"cannot load CLIP model {self.location}: {first_line(exc)}") from None
            device = self.device_name
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model, self._processor, self._torch = model.to(device).eval(), processor, torch
        return self._model, self._processor

    def encode_query(self, texts: Sequence[str]) -> np.ndarray:
        """Text-tower vectors, whatever this encoder's input: a text query against an image set."""
        return self._texts(list(texts))

    def stream(self, texts: Iterable[tuple[Any, str]]) -> Iterator[list[Answer[Any]]]:
        items = iter(texts)
        if self.input == "text":
            while batch := [item for _, item in zip(range(self.batch_size), items)]:
                yield [(key, vector, None) for (key, _), vector in zip(batch, self._texts([t for _, t in batch]))]
            return
        yield from self._images(items)

    def _texts(self, texts: list[str]) -> np.ndarray:
        model, processor = self._load()
        torch = self._torch
        out = []
        for lo in range(0, len(texts), self.batch_size):
            inputs = processor(text=texts[lo:lo + self.batch_size], return_tensors="pt", padding=True,
                               truncation=True).to(model.device)
            with torch.inference_mode():
                out.append(_normalised(model.get_text_features(**inputs)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    def _images(self, items: Iterator[tuple[Any, str]]) -> Iterator[list[Answer[Any]]]:
        model, processor = self._load()
        torch = self._torch
        ahead: deque[tuple[Any, Future[Any]]] = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="featctl-images") as pool:
            def fill() -> None:  # keep a few batches decoding while the model runs
                while len(ahead) < self.batch_size * 3 and (item := next(items, None)) is not None:
                    ahead.append((item[0], pool.submit(_pixels, processor, item[1])))

            fill()
            while ahead:
                answers: list[Answer[Any]] = []
                keys, tensors = [], []
                while ahead and len(keys) < self.batch_size:
                    key, future = ahead.popleft()
                    pixels, error = future.result()
                    if error is not None:
                        answers.append((key, None, error))
                    else:
                        keys.append(key)
                        tensors.append(pixels)
                    fill()
                if tensors:
                    with torch.inference_mode():
                        features = model.get_image_features(pixel_values=torch.stack(tensors).to(model.device))
                    answers += [(k, v, None) for k, v in zip(keys, _normalised(features))]
                yield answers


def _pixels(processor: Any, path: str) -> tuple[Any, str | None]:
    """A preprocessed image tensor, or why the file cannot be one."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()  # decode fully here, so a truncated file fails here
            image = ImageOps.exif_transpose(image).convert("RGB")
    except FileNotFoundError:
        return None, MISSING_FILE
    except UnidentifiedImageError:
        return None, NOT_AN_IMAGE
    except (OSError, SyntaxError, ValueError):
        return None, TRUNCATED
    return processor(images=[image], return_tensors="pt")["pixel_values"][0], None


def _normalised(features: Any) -> np.ndarray:
    features = getattr(features, "pooler_output", features)  # transformers 5 returns the model output
    matrix = features.float().cpu().numpy()
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)
