import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from t2ue.cli import app
from t2ue.data.sets import ImageTextSet, load_dataset, load_image_folder, load_karpathy, part_indices
from t2ue.io.images import add_noise_uint8
from t2ue_eval.methods import hidden_pictures
from t2ue_eval.metrics import headline
from t2ue_eval.protection import to_levels
from t2ue_eval.registry import METHODS, parse_method
from t2ue_eval.report import RecipeMismatch, Table, load_results, tables, write_report
from t2ue_eval.runner import EvalPlan, RunConfig, load_split, method_noise, protect_split, run_one
from t2ue_eval.victims import VictimRecipe


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("T2UE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_method_specs():
    assert {"none", "random", "t2ue"} <= set(METHODS)
    assert parse_method("t2ue").spec() == "t2ue:mode=sample,model=default"
    assert parse_method("t2ue:mode=class").spec() == "t2ue:mode=class,model=default"
    with pytest.raises(ValueError, match="unknown protection method"):
        parse_method("magic")
    with pytest.raises(ValueError, match="takes"):
        parse_method("random:strength=3")


def test_noise_levels_are_quantise_after_adding(tiny_pairs):
    """Integer levels reproduce add-then-round exactly, including values pushed past 0 and 255."""
    method = parse_method("random")
    noise = method.noise(tiny_pairs, 8 / 255, seed=1)
    delta = noise.levels.astype(np.float32) / 255
    assert np.array_equal(noise.apply(tiny_pairs.images), add_noise_uint8(tiny_pairs.images, delta))
    assert np.abs(noise.levels).max() <= 8


def test_random_noise_sample_class_and_grey(tiny_pairs):
    """The plain draw is unchanged; class-wise rows share a pattern per label; luma=true is grey."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((16, 16))) for im in tiny_pairs.images])
    labels = np.arange(len(images)) % 3
    data = ImageTextSet(images, tiny_pairs.captions, labels, ("cat", "rocket", "moon"))
    plain = parse_method("random").noise(data, 8 / 255, seed=2)
    expected = np.random.default_rng([2, 0x5EED]).uniform(-8 / 255, 8 / 255, size=images.shape).astype(np.float32)
    assert np.array_equal(plain.levels, to_levels(expected)) and np.array_equal(plain.index, np.arange(len(images)))
    assert parse_method("random:mode=sample").spec() == "random"
    assert parse_method("random:luma=true,mode=class").spec() == "random:luma=true,mode=class"
    grey = parse_method("random:mode=class,luma=true").noise(data, 8 / 255, seed=2)
    assert grey.levels.shape == (3, 16, 16, 3) and np.array_equal(grey.index, labels)
    assert (grey.levels[..., 0] == grey.levels[..., 1]).all() and (grey.levels[..., 0] == grey.levels[..., 2]).all()
    assert np.abs(grey.levels).max() <= 8 and len(np.unique(grey.levels.reshape(3, -1), axis=0)) == 3
    with pytest.raises(ValueError, match="needs labels"):
        parse_method("random:mode=class").noise(ImageTextSet(images, tiny_pairs.captions), 8 / 255, 0)
    with pytest.raises(ValueError, match="luma=true"):
        parse_method("random:luma=yes").noise(data, 8 / 255, 0)


def test_random_patch_noise_is_block_constant(tiny_pairs):
    """patch=P: one value per P x P block (the last blocks cut at the border), inside the budget."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((18, 18))) for im in tiny_pairs.images])
    labels = np.arange(len(images)) % 3
    data = ImageTextSet(images, tiny_pairs.captions, labels, ("cat", "rocket", "moon"))
    assert parse_method("random:patch=1").noise(data, 8 / 255, 2).levels.tolist() == \
        parse_method("random").noise(data, 8 / 255, 2).levels.tolist()
    blocks = parse_method("random:mode=class,luma=true,patch=4").noise(data, 8 / 255, seed=2).levels
    assert blocks.shape == (3, 18, 18, 3) and np.abs(blocks).max() <= 8
    for r in range(0, 18, 4):
        for c in range(0, 18, 4):
            block = blocks[:, r : r + 4, c : c + 4, 0]
            assert (block == block[:, :1, :1]).all()
    assert len(np.unique(blocks[0, ::4, ::4, 0])) > 5  # the blocks differ from one another
    for bad in ("0", "00", "two", "-3"):
        with pytest.raises(ValueError, match="patch=P"):
            parse_method(f"random:patch={bad}").noise(data, 8 / 255, 0)


def test_random_sign_noise_uses_the_whole_budget(tiny_pairs):
    """dist=sign: every value is +eps or -eps, both signs drawn, block-constant with patch; the plain
    uniform draw keeps its spec (and run ids) unchanged."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((16, 16))) for im in tiny_pairs.images])
    data = ImageTextSet(images, tiny_pairs.captions, np.arange(len(images)) % 3, ("cat", "rocket", "moon"))
    assert parse_method("random:dist=uniform").spec() == "random"
    sign = parse_method("random:dist=sign,mode=class,patch=4").noise(data, 8 / 255, seed=3).levels
    assert set(np.unique(sign).tolist()) == {-8, 8}
    assert (sign[:, :4, :4] == sign[:, :1, :1]).all() and not (sign[..., 0] == sign[..., 1]).all()
    assert 0.3 < (sign > 0).mean() < 0.7
    with pytest.raises(ValueError, match="dist=uniform"):
        parse_method("random:dist=gauss").noise(data, 8 / 255, 0)


def test_random_grating_is_one_stripe_pattern_per_class(tiny_pairs):
    """pattern=grating: +-eps square waves, grey with luma=true, one per class, each with its energy in one
    spatial frequency (its +-f pair of Fourier coefficients), which independent per-pixel noise is not."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((32, 32))) for im in tiny_pairs.images])
    labels = np.arange(len(images)) % 3
    data = ImageTextSet(images, tiny_pairs.captions, labels, ("cat", "rocket", "moon"))
    method = parse_method("random:luma=true,mode=class,pattern=grating")
    assert method.spec() == "random:luma=true,mode=class,pattern=grating"
    noise = method.noise(data, 8 / 255, seed=4)
    levels = noise.levels.astype(np.float64)
    assert set(np.unique(levels).tolist()) == {-8, 8} and levels.shape[0] == 3
    assert (levels[..., :1] == levels).all()
    assert (noise.index == labels).all() and not (levels[0] == levels[1]).all()

    def peak_share(pattern: np.ndarray) -> float:
        power = np.abs(np.fft.fft2(pattern - pattern.mean())) ** 2
        return float(np.sort(power.ravel())[-2:].sum() / power.sum())

    assert min(peak_share(pattern[..., 0]) for pattern in levels) > 0.15
    uniform = parse_method("random:luma=true,mode=class").noise(data, 8 / 255, seed=4).levels.astype(np.float64)
    assert max(peak_share(pattern[..., 0]) for pattern in uniform) < 0.05
    with pytest.raises(ValueError, match="pattern=blocks"):
        parse_method("random:pattern=grating,patch=4").noise(data, 8 / 255, 0)


def test_random_chroma_grating_keeps_its_stripes_under_channel_shuffle(tiny_pairs):
    """pattern=chroma-grating: one pattern per class whose stripes are colourful +-eps noise or none; a
    channel shuffle leaves every pixel as colourful as it was and the stripes where they were."""
    images = np.stack([np.asarray(Image.fromarray(im).resize((32, 32))) for im in tiny_pairs.images])
    labels = np.arange(len(images)) % 3
    data = ImageTextSet(images, tiny_pairs.captions, labels, ("cat", "rocket", "moon"))
    noise = parse_method("random:mode=class,pattern=chroma-grating").noise(data, 8 / 255, seed=4)
    levels = noise.levels.astype(np.int64)
    assert levels.shape == (3, 32, 32, 3) and set(np.unique(levels).tolist()) == {-8, 0, 8}
    assert (noise.index == labels).all() and not (levels[0] == levels[1]).all()
    coloured = (levels != 0).any(axis=-1)
    assert ((levels != 0).all(axis=-1) == coloured).all(), "a pixel is either untouched or fully at +-eps"
    assert 0.3 < coloured.mean() < 0.7
    spread = levels.max(axis=-1) - levels.min(axis=-1)
    assert (spread[coloured] == 16).all(), "no coloured pixel is grey"
    shuffled = levels[..., [2, 0, 1]]
    assert ((shuffled.max(axis=-1) - shuffled.min(axis=-1)) == spread).all()
    power = np.abs(np.fft.fft2(coloured[0] - coloured[0].mean())) ** 2
    assert np.sort(power.ravel())[-2:].sum() / power.sum() > 0.15, "the stripes are one spatial frequency"
    with pytest.raises(ValueError, match="chroma-grating no luma"):
        parse_method("random:luma=true,mode=class,pattern=chroma-grating").noise(data, 8 / 255, 0)


def test_hidden_pictures_are_the_drawings_themselves_at_the_budget(tiny_pairs):
    """pattern=picture's patterns: distinct real pictures, mean-free per channel, peak exactly +-1, and
    each one the picture itself up to an offset and a scale (correlation 1 with its source)."""
    rng = np.random.default_rng(3)
    patterns = hidden_pictures(tiny_pairs.images, rng, 4, planes=3)
    assert patterns.shape == (4, *tiny_pairs.images.shape[1:])
    assert np.allclose(patterns.mean(axis=(1, 2)), 0, atol=1e-5)
    assert np.allclose(np.abs(patterns).max(axis=(1, 2, 3)), 1.0)
    sources = np.random.default_rng(3).choice(len(tiny_pairs.images), size=4, replace=False)
    for pattern, source in zip(patterns, sources):
        picture = tiny_pairs.images[source].astype(np.float64)
        assert np.corrcoef(pattern.ravel(), (picture - picture.mean(axis=(0, 1))).ravel())[0, 1] > 0.999
    grey = hidden_pictures(tiny_pairs.images, np.random.default_rng(3), 4, planes=1)
    assert grey.shape[-1] == 1 and np.allclose(np.abs(grey).max(axis=(1, 2, 3)), 1.0)
    stretched = hidden_pictures(tiny_pairs.images, np.random.default_rng(3), 4, planes=3, stretch=True)
    assert np.abs(stretched).max() <= 1.0 and (stretched ** 2).mean() > (patterns ** 2).mean()
    assert min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in zip(stretched, patterns)) > 0.9
    repeats = hidden_pictures(tiny_pairs.images, rng, 3 * len(tiny_pairs.images), planes=3)
    assert len(repeats) == 3 * len(tiny_pairs.images)  # more patterns than pictures: drawn with repeats
    with pytest.raises(ValueError, match="pattern=blocks"):
        parse_method("random:pattern=picture,patch=8").noise(tiny_pairs, 8 / 255, 0)
    with pytest.raises(ValueError, match="stretch=true is for pictures"):
        parse_method("random:stretch=true").noise(tiny_pairs, 8 / 255, 0)


def test_t2ue_noise_follows_captions_and_labels(tiny_noise_model_dir, tiny_pairs):
    images = np.stack([np.asarray(Image.fromarray(im).resize((16, 16))) for im in tiny_pairs.images])
    captions = tiny_pairs.captions[:8] * 2  # every description twice
    labels = np.arange(16) % 3
    data = ImageTextSet(images, captions, labels, ("cat", "rocket", "moon"))
    sample = parse_method(f"t2ue:model={tiny_noise_model_dir}").noise(data, 8 / 255, seed=0)
    assert len(sample.levels) == 8 and np.array_equal(sample.index[:8], sample.index[8:])
    assert np.abs(sample.levels).max() <= 8
    per_class = parse_method(f"t2ue:model={tiny_noise_model_dir},mode=class").noise(data, 4 / 255, seed=0)
    assert len(per_class.levels) == 3 and np.array_equal(per_class.index, labels)
    assert np.abs(per_class.levels).max() <= 4
    with pytest.raises(ValueError, match="needs labels"):
        parse_method(f"t2ue:model={tiny_noise_model_dir},mode=class").noise(ImageTextSet(images, captions), 8 / 255, 0)


@pytest.mark.parametrize("code", ["words", "embedding"])
def test_text_code_is_a_shared_sign_code_of_each_description(tiny_noise_model_dir, tiny_pairs, code):
    """+-eps in blocks, one pattern per distinct description, and similar descriptions share more of
    their blocks than unrelated ones (the control is only meaningful if the code follows the text)."""
    captions = ["a ginger cat asleep on a red sofa", "a ginger cat asleep on a red blanket",
                "tax forms beside a calculator and a pen", "the surface of the moon with craters"] * 4
    images = np.stack([np.asarray(Image.fromarray(im).resize((18, 18))) for im in tiny_pairs.images])
    data = ImageTextSet(images, captions)
    noise = parse_method(f"textcode:block=3,code={code},model={tiny_noise_model_dir}").noise(data, 8 / 255, seed=0)
    assert noise.levels.shape == (4, 18, 18, 3) and set(np.unique(noise.levels)) == {-8, 8}
    assert np.array_equal(noise.index[:4], noise.index[4:8]) and len(set(noise.index[:4])) == 4
    for r in range(0, 18, 3):
        for c in range(0, 18, 3):
            block = noise.levels[:, r : r + 3, c : c + 3]
            assert (block == block[:, :1, :1]).all()
    pattern = {text: noise.levels[noise.index[i]] for i, text in enumerate(captions[:4])}

    def shared(a: str, b: str) -> float:
        return float((pattern[a] == pattern[b]).mean())

    assert shared(captions[0], captions[1]) > shared(captions[0], captions[2]) + 0.1
    assert shared(captions[0], captions[1]) > shared(captions[1], captions[3]) + 0.1
    again = parse_method(f"textcode:block=3,code={code},model={tiny_noise_model_dir}").noise(data, 8 / 255, seed=0)
    assert np.array_equal(again.levels, noise.levels)
    for bad in ("code=bytes", "block=0"):
        with pytest.raises(ValueError, match="textcode takes"):
            parse_method(f"textcode:{bad}").noise(data, 8 / 255, 0)


def test_protected_fraction_budget_and_cache(tiny_noise_model_dir, tiny_pairs, cache):
    images = np.stack([np.asarray(Image.fromarray(im).resize((16, 16))) for im in tiny_pairs.images])
    data = ImageTextSet(images, tiny_pairs.captions)
    method = parse_method(f"t2ue:model={tiny_noise_model_dir}")
    scraped, info = protect_split(data, method, 8 / 255, seed=0, fraction=0.5)
    changed = (scraped.images != images).reshape(16, -1).any(axis=1)
    assert info["protected_images"] == 8 and changed.sum() <= 8 and not info["cached"]
    assert np.abs(scraped.images.astype(int) - images).max() <= 8
    assert 20 < info["psnr"] < 60 and 0 < info["ssim"] <= 1
    again, info2 = protect_split(data, method, 8 / 255, seed=0, fraction=0.5)
    assert info2["cached"] and np.array_equal(again.images, scraped.images)
    assert len(list((cache / "protection").glob("*.npz"))) == 1
    _, hit = method_noise(method, data, 8 / 255, seed=1)
    assert not hit  # another seed is another noise


def test_image_folder_and_karpathy_sets(photo_folder, tmp_path):
    folder = load_image_folder(photo_folder)
    assert len(folder) == 32 and folder.class_names == ("everyday", "space")
    assert folder.captions[0].endswith("photo") and folder.materialize(24).images.shape == (32, 24, 24, 3)
    entries = [{"filename": f.name, "filepath": f.parent.name, "split": split,
                "sentences": [{"raw": f"caption {i} of {f.stem}"} for i in range(3)]}
               for f, split in zip(sorted(photo_folder.rglob("*.png"))[:6], ["train", "restval", "val", "test", "test",
                                                                            "train"])]
    (photo_folder / "dataset_toy.json").write_text(json.dumps({"images": entries}))
    karpathy = load_karpathy(photo_folder / "dataset_toy.json")
    assert len(karpathy) == 6 and len(karpathy.caption_sets[0]) == 3
    assert list(part_indices(karpathy, "victim_train")) == [0, 1, 5] and list(part_indices(karpathy, "test")) == [3, 4]
    test = load_dataset(str(photo_folder / "dataset_toy.json"), part="test")
    captions, owner = test.all_captions()
    assert len(captions) == 6 and list(owner) == [0, 0, 0, 1, 1, 1]
    (photo_folder / "dataset_toy.json").unlink()


def test_headline_metric_choice():
    retrieval = {"i2t_R@10": 0.2, "t2i_R@10": 0.4, "random_i2t_R@10": 0.01, "random_t2i_R@10": 0.01,
                 "distinct_caption_fraction": 0.9, "zeroshot_accuracy": 0.5, "random_zeroshot_accuracy": 0.1}
    assert headline(retrieval) == ("R@10", pytest.approx(0.3), pytest.approx(0.01))
    assert headline({**retrieval, "distinct_caption_fraction": 0.02})[0] == "zeroshot_accuracy"
    assert headline({"accuracy": 0.8, "random_accuracy": 0.1}) == ("accuracy", 0.8, 0.1)


def test_runs_write_json_skip_existing_and_report(photo_folder, tmp_path, cache):
    recipe = VictimRecipe(epochs=2, batch_size=8, warmup_steps=1)
    out = tmp_path / "runs"
    first = run_one(RunConfig(str(photo_folder), "none", recipe), out, progress=False)
    path = out / f"{first['run_id']}.json"
    saved = json.loads(path.read_text())
    assert saved["config"]["victim"] == recipe.as_dict() and saved["dataset"]["train_pairs"] == 11
    assert {"i2t_R@10", "t2i_R@10", "zeroshot_accuracy", "random_t2i_R@10"} <= set(saved["metrics"])
    stamp = path.stat().st_mtime_ns
    assert run_one(RunConfig(str(photo_folder), "none", recipe), out, skip_existing=True)["run_id"] == first["run_id"]
    assert path.stat().st_mtime_ns == stamp
    run_one(RunConfig(str(photo_folder), "random", recipe, fraction=0.5), out, progress=False)
    other = VictimRecipe(epochs=2, batch_size=8, warmup_steps=1, lr=1e-3)
    run_one(RunConfig(str(photo_folder), "random", other), out, progress=False)
    results = load_results(out)
    assert len(results) == 3 and len(tables(results)) == 2  # one table per recipe
    # same data and victim, other recipe: titles and plot names must not collide
    assert len({t.slug for t in tables(results)}) == 2 and all("recipe" in t.title for t in tables(results))
    assert sorted(t.label.split("recipe: ")[1] for t in tables(results)) == ["lr 0.0005", "lr 0.001"]  # what differs
    with pytest.raises(RecipeMismatch, match="lr"):
        Table(results)
    written = write_report(out, tmp_path / "report")
    markdown = written["markdown"].read_text()
    assert "random guess" in markdown and "clean (none)" in markdown and "50% protected" in markdown
    assert written["csv"].read_text().count("\n") == 4
    clean_row = next(line for line in markdown.splitlines() if line.startswith("| clean (none)"))
    assert f"| {first['victim']['final_loss']:.3f} |" in clean_row  # the victim's last-epoch loss, per row
    assert "train loss" in markdown and "train_loss" in written["csv"].read_text().splitlines()[0]


def test_finetune_runs_record_the_pretrained_starting_point(photo_folder, open_clip_dir, tmp_path, cache):
    """A fine-tuned victim's run keeps what the pretrained model scored before training, and the report
    shows it as a row; a victim trained from scratch has no such row."""
    from t2ue_eval.victims import build_victim, evaluate_victim

    recipe = VictimRecipe.for_kind("clip-finetune", arch=str(open_clip_dir), epochs=2, batch_size=8, lr=1e-3,
                                   warmup_steps=1)
    config = RunConfig(str(photo_folder), "none", recipe)
    result = run_one(config, tmp_path / "runs", progress=False)
    before = result["metrics_before_training"]
    _, test = load_split(config.dataset, config.size, config.train_limit, config.test_limit)
    assert before == evaluate_victim(build_victim(recipe).eval(), recipe, test)  # the untouched model
    assert before != result["metrics"]  # fine-tuning moved it
    rows = {r["row"]: r for r in Table([result]).records()}
    start = rows["pretrained model, before fine-tuning"]
    assert start["headline"] == pytest.approx(headline(before)[1])
    assert start["ratio"] == pytest.approx(headline(before)[1] / headline(result["metrics"])[1])
    assert "| pretrained model, before fine-tuning |" in Table([result]).markdown()
    scratch = run_one(RunConfig(str(photo_folder), "none", VictimRecipe(epochs=1, batch_size=8, warmup_steps=1)),
                      progress=False)
    assert "metrics_before_training" not in scratch
    assert not any(r["row"].startswith("pretrained") for r in Table([scratch]).records())


def test_plan_expansion_dedupes_clean_rows():
    plan = EvalPlan("openclipart", methods=["none", "t2ue"], victims=["clip:victim-vit-tiny", "classifier:resnet18"],
                    seeds=[0, 1], epsilons=["4/255", "8/255"], fractions=[0.0, 0.5, 1.0], recipe={"epochs": 2})
    runs = plan.runs()
    assert len(runs) == 2 * 2 * (1 + 2 * 2)
    assert all(r.victim.epochs == 2 for r in runs)
    assert sum(r.method == "none" for r in runs) == 4 and all(r.fraction > 0 for r in runs)


def test_cli_evaluate_report_and_verify(photo_folder, tiny_noise_model_dir, tmp_path, cache):
    runner = CliRunner()
    out = tmp_path / "runs"
    result = runner.invoke(app, ["evaluate", "--data", str(photo_folder), "--method", "none", "--method",
                                 f"t2ue:model={tiny_noise_model_dir}", "--epochs", "1", "--batch-size", "8",
                                 "-o", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.json"))) == 2
    result = runner.invoke(app, ["report", str(out), "--no-plots"])
    assert result.exit_code == 0 and (out / "report" / "tables.md").is_file()
    result = runner.invoke(app, ["verify", str(tiny_noise_model_dir), "--data", str(photo_folder), "--epochs", "1",
                                 "--json", str(tmp_path / "verify.json")])
    assert result.exit_code == 0, result.output
    assert "verdict:" in result.output and "protected/clean" in result.output
    summary = json.loads((tmp_path / "verify.json").read_text())
    assert summary["train_pairs"] == 11 and summary["metric"] == "R@10"
    assert "training loss, last epoch" in result.output and summary["chance_loss"] == pytest.approx(np.log(11))
    assert summary["train_loss"]["clean"] == summary["runs"][0]["victim"]["final_loss"]
    assert summary["loss_floor"] == 0.0  # every caption of the folder is different
    # one epoch on 11 pairs leaves the clean victim near chance: the verdict comes with a caution
    assert summary["undertrained"] and summary["clean_fitted"] < 0.9 and "caution: after 1 epoch" in result.output
    bad = runner.invoke(app, ["evaluate", "--data", str(tmp_path / "nowhere"), "-o", str(out), "--no-progress"])
    assert bad.exit_code == 1 and "nowhere" in bad.output
    view = runner.invoke(app, ["evaluate", "--data", str(photo_folder), "--exploiter", "coarse", "-o", str(out)])
    assert view.exit_code == 2 and "coarse-labels" in view.output  # the valid views are named


def test_unreadable_images_are_left_out_by_name(photo_folder, tmp_path):
    import shutil

    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    (folder / "space" / "broken.png").write_bytes(b"not a png")
    data = load_image_folder(folder)
    with pytest.warns(UserWarning, match="broken.png"):
        decoded = data.materialize(16)
    assert len(decoded) == len(data) - 1 and "broken.png" in decoded.meta["skipped"][0]


def test_report_shows_the_majority_class_where_labels_are_unbalanced():
    """Four coarse groups, half of them tops: a constant answer scores 0.5, which the table must show
    next to chance (0.25), since half of clean accuracy lies below it — for the classifier and for the
    CLIP's zero-shot accuracy alike. Balanced labels get no such row."""
    results = load_results(Path(__file__).parents[2] / "eval" / "results" / "runs")
    coarse = [r for r in results if r["config"].get("exploiter") == "coarse-labels" and r["config"]["method"] == "none"
              and r["victim"]["kind"] == "classifier"]
    balanced = [r for r in results if r["config"]["method"] == "none" and r["config"]["seed"] == 0
                and "exploiter" not in r["config"] and r["victim"]["kind"] == "classifier"
                and r["dataset"]["train_pairs"] == 4000 and r["config"].get("defense", "none") == "none"]
    rows = {rec["row"]: rec for rec in Table(coarse).records()}
    majority = rows["majority class (one constant answer)"]["values"]["accuracy"][0]
    assert majority == pytest.approx(0.4985) and rows["random guess"]["values"]["accuracy"][0] == 0.25
    assert 0.5 * Table(coarse).clean < majority
    assert balanced and not any(r["row"].startswith("majority") for r in Table(balanced).records())
    clip = [r for r in results if r["config"].get("exploiter") == "coarse-labels" and r["victim"]["kind"] == "clip"]
    rows = {rec["row"]: rec for rec in Table(clip).records()}  # zero-shot over the 4 group prompts: the same bar
    assert rows["majority class (one constant answer)"]["values"]["zeroshot_accuracy"][0] == pytest.approx(0.4985)


def test_protector_view_keys_the_noise_to_other_labels(tmp_path, cache):
    """The oracle protector of setting (b): class-wise noise keyed to the exploiter's four coarse groups
    (one pattern per group, recorded in the run's config and id), where by default it follows the set's
    own ten classes; the clean row ignores it."""
    recipe = VictimRecipe(kind="classifier", arch="resnet18", epochs=1, batch_size=16, warmup_steps=1)
    common = dict(train_limit=60, test_limit=20, size=16, exploiter="coarse-labels")
    oracle = RunConfig("fashion-mnist", "random:mode=class", recipe, protector="coarse-labels", **common)
    own = RunConfig("fashion-mnist", "random:mode=class", recipe, **common)
    assert "prot-coarse-labels" in oracle.run_id() and oracle.as_dict()["protector"] == "coarse-labels"
    assert "protector" not in own.as_dict() and oracle.run_id() != own.run_id()
    assert RunConfig("fashion-mnist", "none", recipe, protector="coarse-labels", **common).protector == "same"
    with pytest.raises(ValueError, match="protector view"):
        RunConfig("fashion-mnist", "random", recipe, protector="coarse")
    results = [run_one(config, tmp_path / "runs", progress=False) for config in (oracle, own)]
    assert [r["protection"]["distinct_patterns"] for r in results] == [4, 10]
    assert all(r["dataset"]["classes"] == 4 for r in results)  # both victims train on the exploiter's groups
    rows = [rec["row"] for rec in Table(results).records()]
    assert any("[protector view: coarse-labels]" in row for row in rows) and "random:mode=class ε=8/255" in rows
    plan = EvalPlan("fashion-mnist", methods=["none", "random"], protectors=["same", "coarse-labels"])
    assert sorted(r.protector for r in plan.runs()) == ["coarse-labels", "same", "same"]  # one clean row
