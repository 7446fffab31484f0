"""mmgnn and moe on the sample data: real stores (MiniLM text, tiny random CLIP posters), real runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from featctl.cli import app
from featctl.errors import TrainInputError
from featctl.models.data import InteractionsConfig, load_interactions
from featctl.models.mmgnn import ItemGraph, MMGNNParams
from featctl.models.modalities import TagsConfig
from featctl.models.splits import split
from featctl.models.train import TrainConfig, _features, _model, _wanted
from featctl.pipeline.config import EmbedConfig
from featctl.pipeline.runner import embed
from featctl.pipeline.sources import SourceSpec
from featctl.stores.store import open_store
from tests.conftest import REPO, write_tsv

DATA = REPO / "data"
INTERACTIONS = str(DATA / "interactions.tsv")
CATALOGUE = str(DATA / "anime.tsv")
runner = CliRunner()
NO_POSTER = {3, 17, 40}  # items whose poster file is missing: the image set has no vector for them


@pytest.fixture(scope="module")
def image_store(sample_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample store plus item_image: tiny random CLIP over one generated poster per anime."""
    import shutil

    from PIL import Image

    from tests.clip_model import save_random_clip

    root = tmp_path_factory.mktemp("mm")
    store = root / "store"
    shutil.copytree(sample_store, store)
    torch.manual_seed(0)
    model = save_random_clip(root / "clip", projection_dim=16, image_size=32,
                             vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=2, patch_size=8),
                             text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2))
    (root / "posters").mkdir()
    rows = []
    for i in range(1, 226):
        if i not in NO_POSTER:
            Image.new("RGB", (32, 48), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256)).save(
                root / "posters" / f"{i}.png")
        rows.append([i, f"posters/{i}.png"])
    items = write_tsv(root / "posters.tsv", ["id", "poster"], rows)
    embed(EmbedConfig(source=SourceSpec(str(items)), store=str(store), image="poster", encoder=f"clip:{model}"))
    return store


def _cli(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _built(config: TrainConfig):
    """The untrained model exactly as ``train`` builds it, with its split."""
    data = load_interactions(config.interactions)
    parts = split(data, config.split, config.seed)
    wanted, _ = _wanted(config)
    features = _features(open_store(config.store), data, wanted, config.min_coverage)
    from featctl.models.modalities import load_tags

    tags = load_tags(config.tags, data.items) if config.tags else None
    return _model(config, data, parts, features, tags)[0], parts, data


def _mmgnn(store: Path, **kw: object) -> TrainConfig:
    given = {"item_features": "item_text", "image_features": "item_image",
             "tags": TagsConfig(SourceSpec(CATALOGUE), "tags", "id")} | kw
    return TrainConfig("mmgnn", InteractionsConfig(SourceSpec(INTERACTIONS)), store=str(store), **given)


def _moe(store: Path, **kw: object) -> TrainConfig:
    given = {"split": "temporal", "item_features": "item_text", "image_features": "item_image"} | kw
    return TrainConfig("moe", InteractionsConfig(SourceSpec(INTERACTIONS), time_col="timestamp"), store=str(store),
                       **given)


def test_mmgnn_trains_on_ids_text_images_and_tags(image_store: Path) -> None:
    out = _cli("train", "mmgnn", "-i", INTERACTIONS, "--store", str(image_store), "--item-features", "item_text",
               "--image-features", "item_image", "--items", CATALOGUE, "--items-id-col", "id", "--item-tags", "tags",
               "--epochs", "3")
    assert {f["set"] for f in out["features"]} == {"item_text", "item_image"}
    graph = out["training"]["item_graph"]
    assert graph["fields"] == ["id", "text", "image", "tags"]
    weights = np.array(graph["mean_adjacency"])
    assert weights.shape == (4, 4) and ((weights > 0) & (weights < 1)).all()
    assert 0 < out["metrics"]["all"]["recall@20"] <= 1
    assert Path(out["run_dir"], "checkpoint.pt").is_file()


def test_items_without_an_image_use_the_learned_missing_vector(image_store: Path) -> None:
    model, _, data = _built(_mmgnn(image_store))
    image = model.projections["image"]
    ids = data.items.to_pylist()
    missing = [ids.index(str(i)) for i in NO_POSTER if str(i) in ids]
    postered = [int(i) <= 225 and int(i) not in NO_POSTER for i in ids]  # the log names 8 ids not in the catalogue
    assert missing and image.mask.tolist() == postered
    with torch.no_grad():
        image.missing.fill_(0.5)
        assert torch.equal(image()[missing], torch.full((len(missing), model.params.dim), 0.5))


def test_switches_remove_their_part(image_store: Path) -> None:
    plain, _, _ = _built(_mmgnn(image_store, modalities=("id",), tags=None,
                                mmgnn=MMGNNParams(item_graph=False, attention=False)))
    assert plain.graph is None and plain.attention is None and plain.tags is None and not len(plain.projections)
    text_only, _, _ = _built(_mmgnn(image_store, modalities=("text",)))
    assert text_only.item_ids is None and list(text_only.projections) == ["text"]


def test_item_graphs_are_generated_for_batches_only(image_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, parts, _ = _built(_mmgnn(image_store, mmgnn=MMGNNParams(batch=64, item_batch=50)))
    sizes: list[int] = []
    original = ItemGraph.forward

    def counting(self: ItemGraph, nodes: torch.Tensor):  # noqa: ANN202
        sizes.append(len(nodes))
        return original(self, nodes)

    batches: list[torch.Tensor] = []
    loss = type(model).loss

    def recording(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor):  # noqa: ANN001, ANN202
        batches.append(torch.cat([pos, neg]))
        return loss(self, users, pos, neg)

    monkeypatch.setattr(ItemGraph, "forward", counting)
    monkeypatch.setattr(type(model), "loss", recording)
    rows, value = next(model.steps(np.random.default_rng(0)))
    value.backward()
    assert rows == 64 and len(sizes) == 1
    assert sizes[0] == len(torch.unique(batches[0])) < 2 * rows  # one graph per distinct positive or negative
    sizes.clear()
    model.embeddings()
    assert max(sizes) == 50 and sum(sizes) == parts.n_items


def test_mmgnn_export_writes_the_checkpoints_embeddings(image_store: Path, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(image_store, store)
    out = _cli("train", "mmgnn", "-i", INTERACTIONS, "--store", str(store), "--item-features", "item_text",
               "--image-features", "item_image", "--items", CATALOGUE, "--items-id-col", "id", "--item-tags", "tags",
               "--epochs", "2", "--export")
    assert out["exported"] == ["mmgnn_item", "mmgnn_user"]
    model, _, data = _built(_mmgnn(store))
    model.load_state_dict(torch.load(Path(out["run_dir"]) / "checkpoint.pt", weights_only=False)["state_dict"])
    model.eval()
    _, items = model.embeddings()
    exported = open_store(str(store)).feature_set("mmgnn_item")
    assert exported.entry["recipe"]["modalities"] == ["id", "text", "image"]
    vectors, mask = exported.vectors([int(i) for i in data.items.to_pylist()])
    assert mask.all()
    np.testing.assert_allclose(vectors, items.numpy(), rtol=1e-5, atol=1e-6)
    found = runner.invoke(app, ["neighbors", "mmgnn_item", "--id", "1", "-k", "3", "--store", str(store)])
    assert found.exit_code == 0 and "Echo Chamber Theory" in found.stdout, found.output


def test_cold_items_are_ranked_by_their_features(image_store: Path) -> None:
    out = _cli("train", "mmgnn", "-i", INTERACTIONS, "--store", str(image_store), "--item-features", "item_text",
               "--image-features", "item_image", "--split", "cold-item", "--epochs", "3")
    assert out["metrics"]["cold"]["users"] > 0
    model, parts, _ = _built(_mmgnn(image_store, split="cold-item", tags=None))
    model.load_state_dict(torch.load(Path(out["run_dir"]) / "checkpoint.pt", weights_only=False)["state_dict"])
    model.eval()
    scores = model.scorer("test")(np.arange(5))[:, torch.from_numpy(parts.cold_items)]
    assert len(torch.unique(scores[0])) == scores.shape[1]  # no ties: each cold item has its own vector


@pytest.mark.parametrize("build", [_mmgnn, _moe])
def test_logits_are_not_saturated_at_initialisation(image_store: Path, build) -> None:  # noqa: ANN001
    """Learned temperature, logits from dot products: at init fewer than 1% of |logit| exceed 10, so
    the loss (computed from logits) has gradients everywhere."""
    torch.manual_seed(0)
    model, parts, _ = _built(build(image_store))
    model.eval()
    logits = model.scorer("test")(np.arange(parts.n_users))
    assert logits.shape == (parts.n_users, parts.n_items) and torch.isfinite(logits).all()
    assert float((logits.abs() > 10).float().mean()) < 0.01
    assert float(logits.std()) > 1e-3  # and not collapsed to a constant either
    model.train()
    rows, loss = next(model.steps(np.random.default_rng(0)))
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_temperature_above_its_cap_comes_back_with_a_gradient() -> None:
    from featctl.models.modalities import Temperature

    temperature = Temperature(cap=10.0)
    with torch.no_grad():
        temperature.log_scale.fill_(5.0)  # e^5 > 10, as an optimiser step could leave it
    temperature(torch.ones(3)).sum().backward()
    assert temperature.log_scale.item() == pytest.approx(np.log(10.0))
    assert float(temperature.log_scale.grad) != 0


@pytest.mark.parametrize("build", [_mmgnn, _moe])
def test_items_with_no_modality_score_finitely(image_store: Path, build) -> None:  # noqa: ANN001
    """Under --modalities text,image, the log's items absent from the catalogue have neither vector."""
    config = build(image_store, modalities=("text", "image"), **({"tags": None} if build is _mmgnn else {}))
    model, parts, data = _built(config)
    absent = np.flatnonzero(np.array([int(i) > 225 for i in data.items.to_pylist()]))
    assert len(absent) == 8
    model.train()
    _, loss = next(model.steps(np.random.default_rng(0)))
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    scores = model.scorer("test")(np.arange(parts.n_users))
    assert torch.isfinite(scores[:, torch.from_numpy(absent)]).all()


def test_moe_trains_on_every_next_item_and_never_on_padding(image_store: Path) -> None:
    from featctl.models.moe import MoEParams

    model, parts, _ = _built(_moe(image_store, moe=MoEParams(max_len=5, batch=16)))
    width = 5 + 1  # the window of inputs plus the next item
    lengths = [len(h) for h in model.history["valid"] if len(h) > 1]
    assert any(n > width for n in lengths) and any(n < width for n in lengths)  # both cases occur
    rows = sum(r for r, _ in model.steps(np.random.default_rng(0)))
    assert rows == sum(min(n, width) - 1 for n in lengths)


def test_moe_trains_leave_one_out_and_reports_gate_weights(image_store: Path) -> None:
    out = _cli("train", "moe", "-i", INTERACTIONS, "--store", str(image_store), "--time-col", "timestamp",
               "--split", "temporal", "--item-features", "item_text", "--image-features", "item_image",
               "--sub-experts", "2", "--epochs", "3")
    assert out["data"]["split"] == "temporal" and out["data"]["test"] == out["metrics"]["all"]["users"]
    assert {"hit@10", "ndcg@10", "recall@20"} <= set(out["metrics"]["all"])
    gates = out["training"]["gate_weights"]["all"]
    assert list(gates) == ["id", "text", "image"] and sum(gates.values()) == pytest.approx(1, abs=1e-3)


def test_moe_histories_follow_time_and_hold_out_the_evaluated_item(image_store: Path) -> None:
    model, parts, data = _built(_moe(image_store))
    valid = dict(map(tuple, parts.valid))
    test = dict(map(tuple, parts.test))
    for user in range(parts.n_users):
        seen, both = model.history["valid"][user], model.history["test"][user]
        assert user not in test or test[user] not in both
        if user in valid:
            assert valid[user] not in seen and both[-1] == valid[user]  # the test sequence ends with the valid item
        rows = data.user == user
        times = dict(zip(data.item[rows], data.time[rows]))
        assert np.all(np.diff([times[i] for i in both]) >= 0)


def test_moe_gate_gives_no_weight_to_a_missing_image(image_store: Path) -> None:
    model, _, data = _built(_moe(image_store))
    ids = data.items.to_pylist()
    missing = [ids.index(str(i)) for i in NO_POSTER if str(i) in ids]
    _, weights = model.all_items()
    assert missing and torch.all(weights[missing, 2] == 0)
    assert torch.allclose(weights.sum(1), torch.ones(len(weights)))
    ids_only, _, _ = _built(_moe(image_store, modalities=("id",)))
    assert ids_only.gate_weights()["all"] == {"id": 1.0}


def test_ablate_mmgnn_prints_one_row_per_switch(image_store: Path) -> None:
    result = runner.invoke(app, ["ablate", "mmgnn", "-i", INTERACTIONS, "--store", str(image_store),
                                 "--item-features", "item_text", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    for cell in ("full (id,text)", "no attention", "no item graph", "modalities id "):
        assert cell in result.stdout, cell
    assert "skipped no tags: no --item-tags given" in result.stdout
    assert "skipped modalities id,image: not within the full model's id,text" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["train", "moe", "--item-features", "item_text"], "moe reads each user's history in time order; pass --time-col"),
    (["train", "lightgcn", "--image-features", "item_image"], "--image-features: only mmgnn and moe read them"),
    (["train", "mmgnn", "--modalities", "id,image"], "--modalities names image, but no image feature set was given"),
    (["train", "mmgnn", "--modalities", "id,audio"], "unknown modality 'audio' in --modalities"),
    (["train", "mmgnn", "--item-tags", "tags"], "--item-tags (and --items-id-col) name columns of the --items file"),
    (["train", "mmgnn", "--items-id-col", "id"], "--item-tags (and --items-id-col) name columns of the --items file"),
    (["train", "mmgnn", "--items", CATALOGUE, "--items-id-col", "id", "--item-tags", "genre"],
     "unknown column 'genre'"),
    (["train", "mmgnn", "--items", CATALOGUE, "--item-tags", "tags"], "unknown column 'item_id'"),
    (["train", "moe", "--time-col", "timestamp", "--items", CATALOGUE, "--item-tags", "tags"],
     "--item-tags: moe mixes id, text and image experts; tags are read by mmgnn"),
    (["train", "moe", "--time-col", "timestamp", "--dim", "30", "--heads", "4"], "--dim 30 must be a multiple"),
    (["train", "mmgnn", "--image-features", "item_text"], None),  # any item set can serve: not an error
    (["ablate", "ease"], "ablate switches parts of lightgcn, mmgnn, moe; ease has none"),
    (["train", "moe", "--time-col", "timestamp", "--split", "random"], "moe is evaluated leave-one-out"),
    (["train", "moe", "--time-col", "timestamp", "--export"], "moe's user vector depends on the sequence"),
    (["train", "mmgnn", "--item-features", "item_text", "--modalities", "text", "--layers", "0"],
     "with --layers 0 every user would be the same"),
])
def test_bad_input_gets_one_line(image_store: Path, args: list[str], message: str | None) -> None:
    result = runner.invoke(app, [*args, "-i", INTERACTIONS, "--store", str(image_store), "--epochs", "1"])
    if message is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1


def test_tags_are_aligned_through_ids(tmp_path: Path, image_store: Path) -> None:
    from featctl.models.modalities import load_tags

    data = load_interactions(InteractionsConfig(SourceSpec(INTERACTIONS)))
    shuffled = write_tsv(tmp_path / "tags.tsv", ["id", "tags"],
                         [[i, "a|b" if i % 2 else "c, a"] for i in reversed(range(1, 226))] + [[999, "z"]])
    tags = load_tags(TagsConfig(SourceSpec(str(shuffled)), "tags", "id"), data.items)
    for index, item in enumerate(data.items.to_pylist()):
        got = {tags.names[t] for t in tags.indices[tags.indptr[index]:tags.indptr[index + 1]]}
        assert got == (set() if int(item) > 225 else {"a", "b"} if int(item) % 2 else {"c", "a"})
    assert "z" not in tags.names  # an item nobody interacted with adds no tag
    with pytest.raises(TrainInputError, match="item ids repeat in column 'id'"):
        load_tags(TagsConfig(SourceSpec(str(write_tsv(tmp_path / "dup.tsv", ["id", "tags"], [[1, "a"], [1, "b"]]))),
                             "tags", "id"), data.items)


def test_options_of_other_models_are_reported_unused(image_store: Path) -> None:
    result = runner.invoke(app, ["train", "lightgcn", "-i", INTERACTIONS, "--store", str(image_store), "--epochs", "1",
                                 "--dropout", "0.5", "--no-attention"])
    assert result.exit_code == 0, result.output
    assert "warning: lightgcn does not read --no-attention, --dropout: not used" in result.stderr
    out = _cli("train", "moe", "-i", INTERACTIONS, "--store", str(image_store), "--epochs", "1", "--time-col",
               "timestamp", "--split", "temporal", "--reg", "0.01", "--tune-features")
    assert out["warnings"] == ["moe does not read --reg, --tune-features: not used"]
    assert _cli("train", "mmgnn", "-i", INTERACTIONS, "--store", str(image_store), "--epochs", "1")["warnings"] == []


def test_shared_options_follow_the_trained_models_rules(image_store: Path) -> None:
    """moe needs --layers 1 or more and --dim a multiple of --heads; lightgcn is not held to either."""
    out = _cli("train", "lightgcn", "-i", INTERACTIONS, "--store", str(image_store), "--epochs", "1", "--layers", "0",
               "--dim", "31")
    assert out["warnings"] == []
