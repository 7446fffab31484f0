"""clip: images and text in one space, with a tiny randomly initialised CLIP of the real architecture.

The model and its processor are saved to a folder and loaded through the path a user's model takes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from featctl.cli import app
from featctl.encoders.base import Encoder
from featctl.encoders.registry import register
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.store import Store
from tests.clip_model import save_random_clip
from tests.conftest import manifest_bytes, write_tsv

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (20, 40, 230), "grey": (128, 128, 128)}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_clip(tmp_path_factory.mktemp("tiny-clip"), projection_dim=16, image_size=32,
                            vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, patch_size=8),
                            text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2))


def direct(folder: Path, paths: list[Path] | None = None, texts: list[str] | None = None) -> np.ndarray:
    """What the model gives, loaded and called directly with transformers, L2-normalised."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)
    with torch.inference_mode():
        if paths is not None:
            images = [Image.open(p).convert("RGB") for p in paths]
            out = model.get_image_features(**processor(images=images, return_tensors="pt"))
        else:
            out = model.get_text_features(**processor(text=texts, return_tensors="pt", padding=True))
    matrix = getattr(out, "pooler_output", out).numpy()
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


@pytest.fixture
def posters(tmp_path: Path) -> Path:
    """items.tsv with relative poster paths: four good JPEG/PNG files, a missing one, a corrupt one."""
    from PIL import Image

    folder = tmp_path / "posters"
    folder.mkdir()
    rows = []
    for i, (name, rgb) in enumerate(COLOURS.items(), start=1):
        image = Image.new("RGB", (48 + 8 * i, 40), rgb)
        image.putpixel((3, 3), (255, 255, 255))
        image.save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
        rows.append([i, f"a {name} poster", f"posters/{i}.{'png' if i % 2 else 'jpg'}"])
    good = (folder / "2.jpg").read_bytes()
    (folder / "6.jpg").write_bytes(good[: len(good) // 2])  # truncated JPEG
    (folder / "7.jpg").write_bytes(b"this is not an image at all")
    rows += [[5, "no poster file", "posters/5.jpg"], [6, "cut short", "posters/6.jpg"],
             [7, "text file", "posters/7.jpg"], [8, "no path", ""]]
    return write_tsv(tmp_path / "items.tsv", ["id", "title", "poster"], rows)


def run(source: Path, store: Path, model: Path, **kw: object):
    return embed(EmbedConfig(source=SourceSpec(path=str(source)), store=str(store), encoder=f"clip:{model}", **kw))


def test_images_equal_the_models_own_vectors_and_bad_files_fail_alone(tiny_clip, posters, tmp_path):
    store = tmp_path / "store"
    result = run(posters, store, tiny_clip, image="poster")
    assert result.set == "item_image" and result.encoded == 4
    assert result.failures == {"missing file": 1, "truncated image": 1, "not an image": 1, "no image": 1}
    fs = Store(str(store)).feature_set("item_image")
    assert fs.entry["modality"] == "image" and fs.dim == 16 and fs.entry["recipe"]["input"] == "image"
    matrix, mask = fs.vectors(range(1, 9))
    assert mask.tolist() == [True] * 4 + [False] * 4
    expected = direct(tiny_clip, [posters.parent / f"posters/{i}.{'png' if i % 2 else 'jpg'}" for i in range(1, 5)])
    np.testing.assert_allclose(matrix[:4], expected, atol=1e-5)


def test_hash_is_over_the_bytes_not_the_path(tiny_clip, posters, tmp_path):
    store = tmp_path / "store"
    run(posters, store, tiny_clip, image="poster")
    folder = posters.parent / "posters"
    shutil.move(folder / "1.png", folder / "moved.png")  # same bytes, new path
    (folder / "3.png").unlink()
    from PIL import Image

    Image.new("RGB", (50, 50), (250, 250, 0)).save(folder / "3.png")  # new bytes, same path
    text = posters.read_text().replace("posters/1.png", "posters/moved.png")
    posters.write_text(text)
    again = run(posters, store, tiny_clip, image="poster")
    assert again.encoded == 1 and again.failed == 0  # only the changed poster; failures stay recorded
    vector = Store(str(store)).feature_set("item_image").vectors([3])[0][0]
    np.testing.assert_allclose(vector, direct(tiny_clip, [folder / "3.png"])[0], atol=1e-5)


def test_a_copy_of_a_poster_is_encoded_once_and_the_summary_says_images(tiny_clip, posters, tmp_path):
    folder = posters.parent / "posters"
    shutil.copy(folder / "1.png", folder / "copy.png")
    posters.write_text(posters.read_text() + "9\tsame poster\tposters/copy.png\n")
    result = CliRunner().invoke(app, ["embed", "--source", str(posters), "--store", str(tmp_path / "store"),
                                      "--image", "poster", "--encoder", f"clip:{tiny_clip}"])
    assert result.exit_code == 0, result.output
    assert "5 encoded (1 copied from identical images)" in result.output
    matrix, mask = Store(str(tmp_path / "store")).feature_set("item_image").vectors([1, 9])
    assert mask.all() and np.array_equal(matrix[0], matrix[1])


def test_text_in_the_image_space_and_a_text_query_against_images(tiny_clip, posters, tmp_path):
    store = tmp_path / "store"
    run(posters, store, tiny_clip, image="poster")
    run(posters, store, tiny_clip, text="{title}")
    fs = Store(str(store)).feature_set("item_text")
    assert fs.entry["recipe"]["input"] == "text"
    np.testing.assert_allclose(fs.vectors([2])[0][0], direct(tiny_clip, texts=["a green poster"])[0], atol=1e-5)
    query = direct(tiny_clip, texts=["a cartoon about toys"])[0]
    images, _ = Store(str(store)).feature_set("item_image").vectors([1, 2, 3, 4])
    best = int(np.argmax(images @ query)) + 1
    result = CliRunner().invoke(app, ["neighbors", "item_image", "--text", "a cartoon about toys", "--store",
                                      str(store), "--json", "-k", "1"])
    assert result.exit_code == 0, result.output
    assert f'"id": {best}' in result.output
    both = CliRunner().invoke(app, ["neighbors", "item_image", "--text", "a red poster", "--compare", "item_text",
                                    "--store", str(store), "-k", "3"])
    assert both.exit_code == 0 and "item_text" in both.output and "overlap@3" in both.output, both.output


class ImagesOnly(Encoder):
    """An image-only encoder, as a vision-tower plugin would declare itself."""

    prefix = "imagesonly"
    inputs = ("image",)

    def __init__(self, model: str) -> None:
        self.recipe, self.dim = {"model": model}, 4

    def encode(self, inputs):  # noqa: ANN001, ANN201
        raise AssertionError("never called: refused before any encoding")


def test_bad_input_gets_one_line(tiny_clip, posters, tmp_path):
    register("imagesonly", ImagesOnly)
    store = tmp_path / "store"
    cases = [
        (["--text", "{title}", "--encoder", "imagesonly:x"], "encoder 'imagesonly:' encodes image only; pass --image"),
        (["--image", "cover", "--encoder", f"clip:{tiny_clip}"], "unknown column 'cover' in --image; available "
                                                                 "columns: id, title, poster"),
        (["--image", "poster"], "encoder 'st:' encodes text only; --image needs an image encoder"),
        (["--image", "poster", "--text", "{title}", "--encoder", f"clip:{tiny_clip}"], "two different sets"),
        (["--image", "poster", "--encoder", f"clip:{tmp_path / 'nope'}"], "cannot load CLIP model"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(app, ["embed", "--source", str(posters), "--store", str(store), *args])
        assert result.exit_code == 1 and message in result.output, (args, result.output)
        assert result.output.startswith("error: ")
    assert manifest_bytes(store) is None


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2].parent / "shared/data/movielens-100k-tmdb/posters")
                    .is_dir(), reason="../shared/data is absent")
def test_movielens_posters(tiny_clip, tmp_path):
    shared = Path(__file__).resolve().parents[2].parent / "shared/data/movielens-100k-tmdb/posters"
    ids = range(1, 1683)
    source = write_tsv(tmp_path / "items.tsv", ["item_id", "poster"], [[i, str(shared / f"{i}.jpg")] for i in ids])
    store = tmp_path / "store"
    result = run(source, store, tiny_clip, image="poster")
    posters_on_disk = sum(os.path.exists(shared / f"{i}.jpg") for i in ids)
    assert result.encoded == posters_on_disk == 1663
    assert result.failures == {"missing file": 19}
    report = CliRunner().invoke(app, ["coverage", "--store", str(store), "--json"])
    assert report.exit_code == 0 and "missing file" in report.output


@pytest.fixture
def http_folder(posters: Path):
    """The posters folder served over HTTP on 127.0.0.1, counting the files it sends."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    sent: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def send_head(self):  # noqa: ANN202 - http.server's own hook
            result = super().send_head()
            if result is not None:
                sent.append(self.path)
            return result

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(posters.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", sent
    server.shutdown()
    server.server_close()


def test_images_from_urls_are_fetched_once_and_cached_by_content(tiny_clip, posters, http_folder, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("FEATCTL_CACHE_DIR", str(tmp_path / "cache"))
    base, sent = http_folder
    source = write_tsv(tmp_path / "urls.tsv", ["id", "poster"],
                       [[1, f"{base}/posters/1.png"], [2, f"{base}/posters/2.jpg"], [3, f"{base}/posters/404.jpg"],
                        [4, f"{base}/posters/1.png"]])
    store = tmp_path / "store"
    result = run(source, store, tiny_clip, image="poster")
    assert result.encoded == 3 and result.failures == {"URL error: HTTP 404": 1}
    assert sorted(sent) == ["/posters/1.png", "/posters/2.jpg"]  # each URL fetched once per run
    matrix, _ = Store(str(store)).feature_set("item_image").vectors([1, 2, 4])
    expected = direct(tiny_clip, [posters.parent / "posters/1.png", posters.parent / "posters/2.jpg"])
    np.testing.assert_allclose(matrix, expected[[0, 1, 0]], atol=1e-5)
    sent.clear()
    again = run(source, store, tiny_clip, image="poster")
    assert again.encoded == 0 and sent == []  # unchanged files answer 304: nothing downloaded or encoded
    small = run(source, tmp_path / "capped", tiny_clip, image="poster", max_image_bytes=10)
    assert small.failures.get("over the size cap") == 3
