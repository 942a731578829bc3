import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import t2ue
import t2ue.io.images
from t2ue.cli import app
from t2ue.io.manifest import MANIFEST, read_manifest

runner = CliRunner()

ROOT = Path(__file__).resolve().parents[2]


def _copies(folder):
    """The protected copies in an output folder (its manifest of them left out)."""
    return sorted(p.name for p in folder.iterdir() if p.name != MANIFEST)


def test_noise_from_text_shapes_budget_determinism(tiny_noise_model_dir):
    texts = ["a selfie of me at the beach", "my dog in the park"]
    noise = t2ue.noise_from_text(texts, size=(50, 70), model=tiny_noise_model_dir, seed=1)
    assert noise.dtype == torch.float32 and noise.shape == (2, 3, 50, 70)
    assert noise.abs().max() <= 8 / 255 + 1e-7
    again = t2ue.noise_from_text(texts, size=(50, 70), model=tiny_noise_model_dir, seed=1)
    assert torch.equal(noise, again)
    other_seed = t2ue.noise_from_text(texts, size=(50, 70), model=tiny_noise_model_dir, seed=2)
    assert not torch.allclose(noise, other_seed)
    full = t2ue.noise_from_text(texts, size=224, model=tiny_noise_model_dir)
    half = t2ue.noise_from_text(texts, size=224, model=tiny_noise_model_dir, epsilon="4/255")
    assert half.abs().max() <= 4 / 255 + 1e-7
    assert torch.allclose(half, full / 2, atol=1e-7)  # rescaled to the new budget


def test_noise_from_text_rejects_empty(tiny_noise_model_dir):
    with pytest.raises(ValueError, match="empty"):
        t2ue.noise_from_text(["  "], model=tiny_noise_model_dir)


@pytest.mark.parametrize("options, message", [(dict(size=0), "whole pixels"), (dict(size=(10, -3)), "whole pixels"),
                                              (dict(size=100_000), "at most"), (dict(mode="pixel"), "cluster"),
                                              (dict(size=True), "whole pixels"), (dict(size=(3.5, 4)), "whole pixels")])
def test_noise_from_text_names_a_bad_size_or_mode(tiny_noise_model_dir, options, message):
    with pytest.raises(ValueError, match=message):  # not a torch error, nor a 120 GB allocation
        t2ue.noise_from_text(["a cat"], model=tiny_noise_model_dir, **options)


def test_protect_keeps_size_and_mode(tiny_noise_model_dir):
    image = Image.new("RGBA", (123, 45), (120, 130, 140, 200))
    out = t2ue.protect(image, "a grey square", model=tiny_noise_model_dir)
    assert out.size == image.size and out.mode == "RGBA"
    diff = np.abs(np.asarray(out, dtype=int) - np.asarray(image, dtype=int))
    assert 1 <= diff.max() <= 8


def test_cli_noise_writes_npy_and_png(tiny_noise_model_dir, tmp_path):
    result = runner.invoke(app, ["noise", "a cat", "-o", str(tmp_path / "n.npy"), "--model", str(tiny_noise_model_dir),
                                 "--size", "40"])
    assert result.exit_code == 0, result.output
    array = np.load(tmp_path / "n.npy")
    assert array.shape == (40, 40, 3) and np.abs(array).max() <= 8 / 255 + 1e-7
    result = runner.invoke(app, ["noise", "a cat", "-o", str(tmp_path / "n.png"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0 and Image.open(tmp_path / "n.png").size == (224, 224)
    result = runner.invoke(app, ["noise", "a cat", "-o", str(tmp_path / "n.webp"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0 and t2ue.io.images.load_image(tmp_path / "n.webp").info["lossless"] is True
    result = runner.invoke(app, ["noise", "a cat", "-o", str(tmp_path / "n.txt"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 2 and ".npy" in result.output and not (tmp_path / "n.txt").exists()


def test_cli_protect_names_a_folder_and_an_empty_description(tiny_noise_model_dir, tmp_path):
    Image.new("RGB", (8, 8), (90, 90, 90)).save(tmp_path / "x.png")
    (tmp_path / "album").mkdir()
    result = runner.invoke(app, ["protect", str(tmp_path / "album"), str(tmp_path / "x.png"), "--text", "a card",
                                 "-o", str(tmp_path / "out"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "album: a folder with no images" in result.output
    assert "1 protected, 1 failed" in result.output
    assert (tmp_path / "out" / "x.png").exists()  # the other photo still goes through
    result = runner.invoke(app, ["protect", str(tmp_path / "x.png"), "--text", "  ", "-o", str(tmp_path / "o2"),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 2 and "empty" in result.output and not (tmp_path / "o2").exists()
    (tmp_path / "o3").write_text("a file, not a folder")
    result = runner.invoke(app, ["protect", str(tmp_path / "x.png"), "--text", "a card", "-o", str(tmp_path / "o3"),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 2 and "o3: is a file" in result.output
    assert (tmp_path / "o3").read_text() == "a file, not a folder"


def test_cli_protect_takes_a_folder_and_a_pattern_the_shell_left(tiny_noise_model_dir, tmp_path):
    """A folder stands for its images (not sub-folders, not hidden files); an unexpanded *.jpg is globbed,
    as cmd.exe and PowerShell pass it."""
    album = tmp_path / "album"
    (album / "nested").mkdir(parents=True)
    for name in ("a.jpg", "b.png", "._a.jpg", "nested/c.png"):
        Image.new("RGB", (8, 8), (30, 120, 200)).save(album / name, format="PNG" if name.endswith("png") else "JPEG")
    (album / "notes.txt").write_text("not a photo")
    result = runner.invoke(app, ["protect", str(album), "--text", "a blue card", "-o", str(tmp_path / "out"),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0, result.output
    assert _copies(tmp_path / "out") == ["a.jpg", "b.png"]
    result = runner.invoke(app, ["protect", str(album / "*.jpg"), str(album / "*.heic"), "--text", "a blue card",
                                 "-o", str(tmp_path / "out2"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "*.heic: no file matches" in result.output
    assert _copies(tmp_path / "out2") == ["a.jpg"]
    result = runner.invoke(app, ["protect", str(album / "*.heic"), "--text", "a blue card", "-o", str(tmp_path / "o3"),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "no photo to protect" in result.output and not (tmp_path / "o3").exists()


def test_cli_protect_end_to_end(tiny_noise_model_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.new("RGB", (64, 48), (200, 100, 50)).save(src / "a.jpg", quality=95)
    Image.new("L", (30, 31), 90).save(src / "b.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    originals = {p.name: p.read_bytes() for p in src.iterdir()}
    captions = tmp_path / "captions.csv"
    captions.write_text("image,caption\na.jpg,an orange card\nb.png,a grey card\nbroken.jpg,nothing\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", *(str(src / n) for n in ("a.jpg", "broken.jpg", "b.png")),
                                 "--captions", str(captions), "-o", str(out), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1  # one failure is reported in the exit status
    assert "broken.jpg" in result.output
    assert _copies(out) == ["a.jpg", "b.png"]
    with Image.open(out / "a.jpg") as a, Image.open(out / "b.png") as b:
        assert (a.format, a.size, b.format, b.mode, b.size) == ("JPEG", (64, 48), "PNG", "L", (30, 31))
    assert {p.name: p.read_bytes() for p in src.iterdir()} == originals  # inputs untouched


def test_cli_protect_takes_the_photos_a_captions_file_lists(tiny_noise_model_dir, tmp_path):
    """Without photo arguments, --captions protects the images it names (relative to its own folder), and a
    listed file that is missing is named while the others go through."""
    (tmp_path / "album").mkdir()
    Image.new("RGB", (20, 16), (200, 100, 50)).save(tmp_path / "album" / "beach.jpg", quality=95)
    Image.new("RGB", (12, 12), (20, 100, 150)).save(tmp_path / "album" / "lake.png")
    captions = tmp_path / "album" / "captions.csv"
    captions.write_text("image,caption\nbeach.jpg,us on the beach\nlake.png,a lake at dawn\ngone.jpg,a lost one\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", "--captions", str(captions), "-o", str(out),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "gone.jpg: no such file" in result.output
    assert _copies(out) == ["beach.jpg", "lake.png"]
    result = runner.invoke(app, ["protect", "-o", str(out), "--text", "x", "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 2 and "give the photos to protect" in result.output


def test_cli_protect_refuses_to_overwrite_inputs(tiny_noise_model_dir, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    before = (tmp_path / "x.png").read_bytes()
    result = runner.invoke(app, ["protect", str(tmp_path / "x.png"), "--text", "black", "-o", str(tmp_path),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "overwrite" in result.output
    assert (tmp_path / "x.png").read_bytes() == before


def test_cli_protect_keeps_both_copies_of_same_named_photos(tiny_noise_model_dir, tmp_path):
    """Two inputs called x.png from different folders: the first copy is kept, the second is refused."""
    for folder, colour in (("a", (200, 10, 10)), ("b", (10, 10, 200))):
        (tmp_path / folder).mkdir()
        Image.new("RGB", (8, 8), colour).save(tmp_path / folder / "x.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"),
                                 "--text", "a card", "-o", str(out), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "same file name" in result.output
    with Image.open(out / "x.png") as kept:
        assert kept.getpixel((0, 0))[0] > 150  # the red one from folder a, not overwritten by b


def _album(root, names):
    """Small PNGs of different colours at the given paths under root."""
    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (10, 8), (40 + 50 * i, 200 - 40 * i, 90)).save(root / name)


def test_cli_protect_recursive_mirrors_the_album_and_resumes(tiny_noise_model_dir, tmp_path):
    """-r walks sub-folders (not hidden ones, not the output folder inside the album); two photos of one
    name in different folders both get copies at their own paths; --skip-existing leaves done copies be."""
    album = tmp_path / "album"
    _album(album, ["top.png", "2025/IMG_1.png", "2026/IMG_1.png", "2026/trip/x.png", ".cache/hidden.png"])
    out = album / "protected"
    args = ["protect", str(album), "-r", "--text", "our holidays", "-o", str(out), "--model", str(tiny_noise_model_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    copies = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert copies == ["2025/IMG_1.png", "2026/IMG_1.png", "2026/trip/x.png", "top.png"]
    assert result.output.splitlines()[-1] == "4 protected"
    with Image.open(album / "2026/IMG_1.png") as original, Image.open(out / "2026/IMG_1.png") as copy:
        expected = t2ue.protect(original, "our holidays", model=tiny_noise_model_dir)
        assert np.array_equal(np.asarray(copy), np.asarray(expected))
    before = {c: (out / c).stat().st_mtime_ns for c in copies}
    (out / "top.png").unlink()
    result = runner.invoke(app, [*args, "--skip-existing"])
    assert result.exit_code == 0, result.output
    assert result.output.count("already there, kept") == 3 and result.output.splitlines()[-1] == "1 protected, 3 kept"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == copies  # its own copies not walked
    assert all((out / c).stat().st_mtime_ns == before[c] for c in copies if c != "top.png")
    # another run into another folder: the pattern reaches the first run's copies too, and leaves them out
    result = runner.invoke(app, ["protect", str(album / "**" / "IMG_*.png"), "-r", "--text", "x", "-o",
                                 str(tmp_path / "globbed"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "globbed").as_posix() for p in (tmp_path / "globbed").rglob("*.png")) == [
        "2025/IMG_1.png", "2026/IMG_1.png"]
    assert "left out 2 copies t2ue protected earlier" in result.output


def test_cli_protect_never_protects_its_own_copies_twice(tiny_noise_model_dir, tmp_path):
    """Copies a run wrote are listed in its output folder; a later run over an album that holds them leaves
    them out (a second noise would double the perturbation), names one given on its own, and still
    protects the originals beside them."""
    album = tmp_path / "album"
    _album(album, ["a.png", "b.png"])
    model = ["--model", str(tiny_noise_model_dir)]
    first = runner.invoke(app, ["protect", str(album), "--text", "our garden", "-o", str(album / "2025"), *model])
    assert first.exit_code == 0, first.output
    assert sorted(read_manifest(album / "2025")) == ["a.png", "b.png"]
    _album(album / "2025", ["new.png"])  # an original saved into that folder later is no copy
    again = runner.invoke(app, ["protect", str(album), "-r", "--text", "our garden", "-o", str(tmp_path / "out"), *model])
    assert again.exit_code == 0, again.output
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "2025/new.png", "a.png", "b.png"]
    assert "left out 2 copies t2ue protected earlier" in again.output
    named = runner.invoke(app, ["protect", str(album / "2025" / "a.png"), str(album / "b.png"), "--text", "x",
                                "-o", str(tmp_path / "named"), *model])
    assert named.exit_code == 1 and "a.png: a copy t2ue protected earlier" in named.output
    assert _copies(tmp_path / "named") == ["b.png"]
    captions = album / "captions.csv"
    captions.write_text("image,caption\n2025/b.png,the garden\na.png,the garden\n")
    listed = runner.invoke(app, ["protect", "--captions", str(captions), "-r", "-o", str(tmp_path / "listed"), *model])
    assert listed.exit_code == 1 and "b.png: a copy t2ue protected earlier" in listed.output
    assert _copies(tmp_path / "listed") == ["a.png"]


def test_cli_protect_captions_match_by_path_before_name(tiny_noise_model_dir, tmp_path):
    """A captions file listing two photos of one name gives each its own caption (by path); a photo of that
    name from elsewhere is refused with both listed, not given one of them at random."""
    album = tmp_path / "album"
    _album(album, ["2025/IMG_1.png", "2026/IMG_1.png"])
    captions = album / "captions.csv"
    captions.write_text("image,caption\n2025/IMG_1.png,the old harbour\n2026/IMG_1.png,my sister's wedding\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", "--captions", str(captions), "-r", "-o", str(out),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0, result.output
    for name, caption in (("2025/IMG_1.png", "the old harbour"), ("2026/IMG_1.png", "my sister's wedding")):
        with Image.open(album / name) as original, Image.open(out / name) as copy:
            expected = t2ue.protect(original, caption, model=tiny_noise_model_dir)
            assert np.array_equal(np.asarray(copy), np.asarray(expected))
    result = runner.invoke(app, ["protect", str(album / "2025/IMG_1.png"), "--captions", str(captions), "-o",
                                 str(tmp_path / "one"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0, result.output  # given by its path: its own caption
    _album(tmp_path / "elsewhere", ["IMG_1.png"])
    result = runner.invoke(app, ["protect", str(tmp_path / "elsewhere/IMG_1.png"), "--captions", str(captions),
                                 "-o", str(tmp_path / "o2"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "lists 2 photos of this name" in result.output
    assert not list((tmp_path / "o2").iterdir())


def test_cli_protect_takes_each_photos_own_description(tiny_noise_model_dir, tmp_path, described_photo):
    """--metadata-captions protects each photo with the description its photo app wrote into it (XMP, IPTC,
    PNG text: the same bytes as --text with those words); a photo with none, or only a camera's placeholder,
    is named and the rest go on, unless --text gives the words for such photos."""
    album = tmp_path / "album"
    album.mkdir()
    photos = {"lr.jpg": ("xmp", "a dog on the beach"), "agency.jpg": ("iptc", "the mayor opens the bridge"),
              "scan.png": ("png-text", "grandpa's workshop, 1972")}
    for i, (name, (kind, words)) in enumerate(photos.items()):
        described_photo(album / name, kind, words, colour=(60 + 60 * i, 90, 150 - 40 * i))
    described_photo(album / "camera.jpg", "exif", "OLYMPUS DIGITAL CAMERA", colour=(30, 30, 200))
    model = ["--model", str(tiny_noise_model_dir)]
    result = runner.invoke(app, ["protect", str(album), "--metadata-captions", "-o", str(tmp_path / "out"), *model])
    assert result.exit_code == 1
    assert "camera.jpg: no description in its metadata" in result.output and "3 protected, 1 failed" in result.output
    assert '"a dog on the beach"' in result.output  # each line says which words made its noise
    for name, (_, words) in photos.items():
        single = runner.invoke(app, ["protect", str(album / name), "--text", words, "-o", str(tmp_path / "one"), *model])
        assert single.exit_code == 0, single.output
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    result = runner.invoke(app, ["protect", str(album / "camera.jpg"), str(album / "lr.jpg"), "--metadata-captions",
                                 "--text", "a blue card", "-o", str(tmp_path / "fallback"), *model])
    assert result.exit_code == 0, result.output
    assert '"a blue card"' in result.output and '"a dog on the beach"' in result.output
    single = runner.invoke(app, ["protect", str(album / "camera.jpg"), "--text", "a blue card", "-o",
                                 str(tmp_path / "one"), *model])
    assert (tmp_path / "fallback/camera.jpg").read_bytes() == (tmp_path / "one/camera.jpg").read_bytes()
    refused = runner.invoke(app, ["protect", str(album), "--metadata-captions", "--captions", str(album / "c.csv"),
                                  "-o", str(tmp_path / "x"), *model])
    assert refused.exit_code == 2 and "--captions alone" in refused.output


def test_cli_protect_never_writes_over_a_photo_already_in_the_output_folder(tiny_noise_model_dir, tmp_path):
    """A file of the same name already in the output folder that t2ue did not write — the user's own
    original — is left untouched and the photo named; a copy t2ue wrote there earlier is replaced by a
    new run (another description, another model)."""
    _album(tmp_path / "downloads", ["IMG_1.png", "IMG_2.png"])
    pictures = tmp_path / "Pictures"
    _album(pictures, ["IMG_1.png"])  # a different photo that happens to share the name
    mine = (pictures / "IMG_1.png").read_bytes()
    model = ["--model", str(tiny_noise_model_dir)]
    result = runner.invoke(app, ["protect", str(tmp_path / "downloads"), "--text", "a card", "-o", str(pictures), *model])
    assert result.exit_code == 1 and "IMG_1.png is already there and is no copy t2ue wrote" in result.output
    assert (pictures / "IMG_1.png").read_bytes() == mine and (pictures / "IMG_2.png").exists()
    first = (pictures / "IMG_2.png").read_bytes()
    again = runner.invoke(app, ["protect", str(tmp_path / "downloads" / "IMG_2.png"), "--text", "another card", "-o",
                                str(pictures), *model])
    assert again.exit_code == 0, again.output
    assert (pictures / "IMG_2.png").read_bytes() != first  # its own earlier copy, made again
    assert list(read_manifest(pictures)) == ["IMG_2.png"]  # listed once, with the hash of the copy made again


def test_cli_protect_dry_run_says_what_would_happen_and_writes_nothing(tmp_path, described_photo):
    """--dry-run names each copy with the words its noise would come from, the copies already there and the
    photos that would fail, and creates nothing: no output folder, no manifest, no clusters, no model loaded."""
    album = tmp_path / "album"
    album.mkdir()
    described_photo(album / "beach.jpg", "xmp", "a dog on the beach")
    described_photo(album / "plain.png", "none", "")
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", str(album), "--metadata-captions", "--mode", "cluster", "-o", str(out),
                                 "--model", str(tmp_path / "no-such-model"), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert f'{out / "beach.jpg"}  would be protected from {album / "beach.jpg"}  "a dog on the beach"' in result.output
    assert "plain.png: no description in its metadata" in result.output
    assert "1 would be protected, 1 would fail; nothing written (dry run)" in result.output
    assert not out.exists()


def test_cli_protect_in_parallel_writes_what_one_at_a_time_writes(tiny_noise_model_dir, tmp_path):
    """--jobs 3 writes the same bytes as --jobs 1, reports in the photos' order and still names the bad file;
    noise made for a batch of photos at once is each photo's own (class mode: each caption a label)."""
    album = tmp_path / "album"
    names = [f"p{i}.png" for i in range(6)]
    _album(album, names)
    (album / "p3.png").write_bytes(b"not a png")
    captions = album / "captions.csv"
    captions.write_text("image,caption\n" + "".join(f"{n},{['shirt', 'coat', 'sandal'][i % 3]}\n"
                                                      for i, n in enumerate(names)))
    outputs = {}
    for jobs in (1, 3):
        out = tmp_path / f"out{jobs}"
        result = runner.invoke(app, ["protect", "--captions", str(captions), "--mode", "class", "-j", str(jobs),
                                     "-o", str(out), "--model", str(tiny_noise_model_dir)])
        assert result.exit_code == 1 and "p3.png" in result.output and "5 protected, 1 failed" in result.output
        reported = [line.split()[0] for line in result.output.splitlines() if "PSNR" in line]
        assert reported == [str(out / n) for n in names if n != "p3.png"]
        outputs[jobs] = {p.name: p.read_bytes() for p in out.iterdir() if p.name != MANIFEST}
    assert outputs[1] == outputs[3] and len(outputs[1]) == 5
    with Image.open(album / "p4.png") as original, Image.open(tmp_path / "out3" / "p4.png") as copy:
        expected = t2ue.protect(original, "coat", model=tiny_noise_model_dir, mode="class")
        assert np.array_equal(np.asarray(copy), np.asarray(expected))


def test_cli_protect_same_name_in_another_case_is_one_file(tiny_noise_model_dir, tmp_path):
    """On macOS and Windows A.png and a.png are one file: the second copy is refused, the first kept."""
    _album(tmp_path, ["one/A.png", "two/a.png"])
    result = runner.invoke(app, ["protect", str(tmp_path / "one"), str(tmp_path / "two"), "--text", "a card",
                                 "-o", str(tmp_path / "out"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "same file name" in result.output and "1 protected, 1 failed" in result.output
    assert _copies(tmp_path / "out") == ["A.png"]


def test_cli_protect_needs_text_or_captions(tmp_path):
    result = runner.invoke(app, ["protect", str(tmp_path / "x.png"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2


def test_cli_train_and_resume(minilm_surrogate_dir, tiny_pairs, tmp_path):
    """`t2ue train` on a CSV set: writes a loadable noise model, a loss log and resumable checkpoints."""
    folder = tmp_path / "pairs"
    folder.mkdir()
    rows = ["image,caption"]
    for i, (im, cap) in enumerate(zip(tiny_pairs.images, tiny_pairs.captions)):
        Image.fromarray(im).save(folder / f"{i}.png")
        rows.append(f"{i}.png,\"{cap}\"")
    (folder / "pairs.csv").write_text("\n".join(rows))
    args = ["train", "--data", str(folder / "pairs.csv"), "-o", str(tmp_path / "run"), "--surrogate",
            str(minilm_surrogate_dir), "--resolution", "16", "--steps", "4", "--batch-size", "8",
            "--checkpoint-every", "2", "--part", "all"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4
    assert (tmp_path / "run" / "checkpoints" / "step_2").is_dir()
    noise = t2ue.noise_from_text(["a ginger cat"], model=tmp_path / "run" / "model", size=None)
    assert noise.shape == (1, 3, 16, 16)
    result = runner.invoke(app, [*args[:-4], "--steps", "6", "--part", "all"])
    assert result.exit_code == 0 and "resumed" in result.output


def test_bundled_default_model_is_small_and_in_budget():
    from t2ue.models.registry import ASSETS

    weights = sum(p.stat().st_size for p in (ASSETS / "default").rglob("*.safetensors"))
    assert weights <= 25e6
    noise = t2ue.noise_from_text(["a selfie of me at the beach", "a red car on a road"], size=224)
    assert noise.shape == (2, 3, 224, 224) and noise.abs().max() <= 8 / 255 + 1e-7
    assert (noise[0] - noise[1]).abs().mean() > 1 / 255  # the description changes the noise
    model = t2ue.load_noise_model()
    assert model.resolution == (64, 64) and model.surrogate.image_size == (64, 64)


def test_cli_protect_names_the_bad_line_of_a_captions_file(tiny_noise_model_dir, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"image": "x.png", "caption": "a dark card"}\n{"image": "y.png", caption}\n')
    result = runner.invoke(app, ["protect", str(tmp_path / "x.png"), "--captions", str(captions),
                                 "-o", str(tmp_path / "out"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 2 and "captions.jsonl: line 2 is not JSON" in result.output


def _frames(path):
    with Image.open(path) as im:
        frames = []
        for i in range(getattr(im, "n_frames", 1)):
            im.seek(i)
            frames.append((np.asarray(im.convert("RGBA"), dtype=int), im.info.get("duration")))
        return im.format, frames


@pytest.mark.parametrize("name, save", [
    ("anim.png", dict(format="PNG", duration=[100, 200, 300], loop=0)),
    ("anim.webp", dict(format="WEBP", duration=[100, 200, 300], loop=0, lossless=True)),
    ("pages.tif", dict(format="TIFF", compression="tiff_lzw")),
])
def test_protect_file_keeps_every_frame_exactly(tiny_noise_model_dir, tmp_path, name, save):
    """Animations and multi-page files: every frame protected with the same noise, within the budget,
    lossless formats written back losslessly, timings kept."""
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(30, 220, (40, 56, 3), dtype=np.uint8)) for _ in range(3)]
    source = tmp_path / name
    frames[0].save(source, save_all=True, append_images=frames[1:], **save)
    before = source.read_bytes()
    original, written = t2ue.api.protect_file(source, tmp_path / "out" / name, "three cards",
                                              model=tiny_noise_model_dir)
    fmt_in, ins = _frames(source)
    fmt_out, outs = _frames(tmp_path / "out" / name)
    assert fmt_out == fmt_in and len(outs) == 3 and source.read_bytes() == before
    for (a, duration_in), (b, duration_out), frame in zip(ins, outs, frames):
        assert duration_out == duration_in
        expected = np.asarray(t2ue.protect(frame, "three cards", model=tiny_noise_model_dir), dtype=int)
        assert np.array_equal(b[..., :3], expected)  # exactly what apply_noise made: nothing lost on the way
        assert 1 <= np.abs(b - a).max() <= 8
    first = np.asarray(t2ue.protect(frames[0], "three cards", model=tiny_noise_model_dir))
    assert np.array_equal(np.asarray(written.convert("RGB")), first)  # protect_file returns what it wrote
    assert np.array_equal(np.asarray(original.convert("RGB")), np.asarray(frames[0]))


def test_protect_file_webp_and_mpo_stay_what_they_were(tiny_noise_model_dir, tmp_path):
    from PIL import JpegImagePlugin

    photo = Image.open(ROOT / "demos" / "samples" / "astronaut.png")
    photo = photo.convert("RGB").resize((96, 96))
    photo.save(tmp_path / "lossless.webp", lossless=True)
    photo.save(tmp_path / "lossy.webp", quality=80)
    photo.save(tmp_path / "camera.mpo", format="MPO", save_all=True, append_images=[photo.resize((48, 48))])
    out = tmp_path / "out"
    for name in ("lossless.webp", "lossy.webp", "camera.mpo"):
        t2ue.api.protect_file(tmp_path / name, out / name, "an astronaut", model=tiny_noise_model_dir)
    assert t2ue.io.images.load_image(out / "lossless.webp").info["lossless"] is True
    assert t2ue.io.images.load_image(out / "lossy.webp").info["lossless"] is False  # not inflated to lossless
    expected = np.asarray(t2ue.protect(photo, "an astronaut", model=tiny_noise_model_dir))
    assert np.array_equal(np.asarray(Image.open(out / "lossless.webp").convert("RGB")), expected)
    with Image.open(out / "camera.mpo") as mpo:
        assert mpo.format == "MPO" and mpo.n_frames == 2
        assert JpegImagePlugin.get_sampling(mpo) == 0  # 4:4:4, as for JPEG
        assert max(mpo.quantization[0]) <= 12  # quality 95 (quality 90 has steps of 24, Pillow's default 61)


def test_cli_protect_refuses_gif_and_goes_on(tiny_noise_model_dir, tmp_path):
    Image.new("RGB", (16, 16), (200, 30, 30)).convert("P").save(tmp_path / "a.gif")
    Image.new("RGB", (16, 16), (30, 30, 200)).save(tmp_path / "b.png")
    result = runner.invoke(app, ["protect", str(tmp_path / "a.gif"), str(tmp_path / "b.png"), "--text", "a card",
                                 "-o", str(tmp_path / "out"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 1 and "a.gif: GIF keeps at most 256 colours" in result.output
    assert _copies(tmp_path / "out") == ["b.png"]


XMP_NO_MINING = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                 '<rdf:Description xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
                 'plus:DataMining="http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED"/></rdf:RDF></x:xmpmeta>')


@pytest.mark.parametrize("name", ["rights.jpg", "rights.webp", "rights.png", "rights.tif"])
def test_protect_file_keeps_the_owners_rights_metadata(tiny_noise_model_dir, tmp_path, name):
    """XMP (a "no data mining" declaration), PNG text chunks and TIFF's copyright travel with the copy."""
    from PIL import PngImagePlugin, TiffImagePlugin

    photo = Image.new("RGB", (24, 20), (120, 80, 40))
    source = tmp_path / name
    if name.endswith(".png"):
        chunks = PngImagePlugin.PngInfo()
        chunks.add_itxt("XML:com.adobe.xmp", XMP_NO_MINING)
        chunks.add_itxt("Copyright", "© Jane Doe, all rights reserved")
        photo.save(source, pnginfo=chunks)
    elif name.endswith(".tif"):
        tags = TiffImagePlugin.ImageFileDirectory_v2()
        tags[33432], tags[315], tags[700] = "(c) Jane Doe", "Jane Doe", XMP_NO_MINING.encode()  # ASCII, as TIFF says
        photo.save(source, tiffinfo=tags)
    else:
        photo.save(source, xmp=XMP_NO_MINING.encode())
    t2ue.api.protect_file(source, tmp_path / "out" / name, "a brown card", model=tiny_noise_model_dir)
    with Image.open(tmp_path / "out" / name) as copy:
        xmp = copy.info.get("xmp", b"")
        assert b"DMI-PROHIBITED" in (xmp if isinstance(xmp, bytes) else xmp.encode())
        if name.endswith(".png"):
            assert copy.text["Copyright"] == "© Jane Doe, all rights reserved"
        if name.endswith(".tif"):
            assert (copy.tag_v2[33432], copy.tag_v2[315]) == ("(c) Jane Doe", "Jane Doe")


def test_protect_file_keeps_jpeg_iptc_copyright(tiny_noise_model_dir, tmp_path, iptc_segment):
    """A JPEG's IPTC-IIM copyright notice (APP13, as Lightroom and news agencies write it) is kept."""
    from PIL import IptcImagePlugin

    notice = b"(c) Jane Doe, no AI training"
    source = tmp_path / "agency.jpg"
    Image.new("RGB", (24, 20), (120, 80, 40)).save(source, extra=iptc_segment({116: notice}))  # 2:116, copyright
    with Image.open(source) as original:
        assert IptcImagePlugin.getiptcinfo(original)[(2, 116)] == notice
    t2ue.api.protect_file(source, tmp_path / "out.jpg", "a brown card", model=tiny_noise_model_dir)
    with Image.open(tmp_path / "out.jpg") as copy:
        assert IptcImagePlugin.getiptcinfo(copy)[(2, 116)] == notice


def test_cli_demo_names_a_bad_model_before_starting(tmp_path):
    result = runner.invoke(app, ["demo", "--model", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "nowhere: not a noise model folder" in result.output


def test_protected_copy_carries_no_unprotected_preview(tiny_noise_model_dir, tmp_path):
    """Previews of the photo hidden in its metadata — an XMP thumbnail, a Photoshop thumbnail in the IPTC
    block, a camera preview in the EXIF maker note, a PNG raw profile — are left out of the copy, which
    keeps the owner's rights statements; a scraper could otherwise train on the unprotected preview."""
    import base64
    import io

    from PIL import IptcImagePlugin, PngImagePlugin

    preview = io.BytesIO()
    Image.new("RGB", (16, 12), (250, 0, 0)).save(preview, format="JPEG")
    preview = preview.getvalue()
    marker = base64.b64encode(preview)
    xmp = XMP_NO_MINING.replace("</rdf:RDF>", '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
                                "xmlns:xmpGImg=\"http://ns.adobe.com/xap/1.0/g/img/\"><xmp:Thumbnails><rdf:Alt><rdf:li>"
                                f"<xmpGImg:image>{marker.decode()}</xmpGImg:image></rdf:li></rdf:Alt></xmp:Thumbnails>"
                                "</rdf:Description></rdf:RDF>").encode()
    notice = b"(c) Jane Doe"
    iim = b"\x1c\x02\x74" + len(notice).to_bytes(2, "big") + notice

    def resource(number, data):
        return b"8BIM" + number.to_bytes(2, "big") + b"\x00\x00" + len(data).to_bytes(4, "big") + data + b"\x00" * (
            len(data) % 2)

    app13 = b"Photoshop 3.0\x00" + resource(0x040C, preview) + resource(0x0404, iim)
    exif = Image.Exif()
    exif[0x010F] = "Nikon"
    exif.get_ifd(0x8769)[0x927C] = b"PREVIEW" + preview  # maker note with a preview
    photo = Image.new("RGB", (24, 20), (120, 80, 40))
    photo.save(tmp_path / "camera.jpg", xmp=xmp, exif=exif.tobytes(),
               extra=b"\xff\xed" + (len(app13) + 2).to_bytes(2, "big") + app13)
    chunks = PngImagePlugin.PngInfo()
    chunks.add_itxt("XML:com.adobe.xmp", xmp.decode())
    raw = exif.tobytes()  # ImageMagick's way of keeping EXIF in a PNG: a hex dump, maker note and all
    chunks.add_text("Raw profile type exif", f"\nexif\n{len(raw):8d}\n{raw.hex()}\n")
    chunks.add_text("Author", "Jane Doe")
    photo.save(tmp_path / "edited.png", pnginfo=chunks)
    for name in ("camera.jpg", "edited.png"):
        assert marker in (tmp_path / name).read_bytes() or preview.hex().encode() in (tmp_path / name).read_bytes()
        t2ue.api.protect_file(tmp_path / name, tmp_path / "out" / name, "a brown card", model=tiny_noise_model_dir)
        written = (tmp_path / "out" / name).read_bytes()
        assert marker not in written and preview not in written and preview.hex().encode() not in written
        assert b"DMI-PROHIBITED" in written  # the rights statement stays
    with Image.open(tmp_path / "out" / "camera.jpg") as copy:
        assert IptcImagePlugin.getiptcinfo(copy)[(2, 116)] == notice and copy.getexif()[0x010F] == "Nikon"
    with Image.open(tmp_path / "out" / "edited.png") as copy:
        assert copy.text["Author"] == "Jane Doe" and "Raw profile type exif" not in copy.text


def test_protected_copy_carries_no_motion_photo_video(tiny_noise_model_dir, tmp_path):
    """A motion photo (Google's and Samsung's) is a JPEG with its short video appended after the image;
    those frames would carry no noise, so the copy holds the protected still alone, and its XMP no longer
    declares a video (the owner's rights statement stays)."""
    import xml.etree.ElementTree as ET

    xmp = (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
           b"<rdf:Description rdf:about='' xmlns:GCamera='http://ns.google.com/photos/1.0/camera/' "
           b"xmlns:Container='http://ns.google.com/photos/1.0/container/' "
           b"xmlns:Item='http://ns.google.com/photos/1.0/container/item/' "
           b"xmlns:dc='http://purl.org/dc/elements/1.1/' GCamera:MotionPhoto='1' GCamera:MotionPhotoVersion='1' "
           b"GCamera:MotionPhotoPresentationTimestampUs='968644'><dc:rights>(c) Jane Doe</dc:rights>"
           b"<Container:Directory><rdf:Seq><rdf:li rdf:parseType='Resource'><Container:Item Item:Mime='image/jpeg' "
           b"Item:Semantic='Primary'/></rdf:li><rdf:li rdf:parseType='Resource'><Container:Item Item:Mime='video/mp4' "
           b"Item:Semantic='MotionPhoto' Item:Length='9519'/></rdf:li></rdf:Seq></Container:Directory>"
           b"</rdf:Description></rdf:RDF></x:xmpmeta>")
    source = tmp_path / "PXL_0001.MP.jpg"
    Image.new("RGB", (40, 30), (20, 160, 90)).save(source, quality=95, xmp=xmp)
    video = b"\x00\x00\x00\x18ftypmp42" + b"unprotected frames " * 500
    with open(source, "ab") as handle:
        handle.write(video)
    t2ue.api.protect_file(source, tmp_path / "out.jpg", "a green card", model=tiny_noise_model_dir)
    written = (tmp_path / "out.jpg").read_bytes()
    assert b"ftypmp42" not in written and b"unprotected frames" not in written
    assert written.endswith(b"\xff\xd9")  # ends where the JPEG ends
    with Image.open(tmp_path / "out.jpg") as copy:
        kept = copy.info["xmp"]
    assert b"(c) Jane Doe" in kept and b"MotionPhoto" not in kept and b"video/mp4" not in kept
    ET.fromstring(kept)  # still a well-formed packet


def test_protect_file_heic_from_a_phone(tiny_noise_model_dir, tmp_path):
    """HEIC in, HEIC out (quality 95, 4:4:4 chroma, XMP and EXIF kept, no thumbnail, the noise on it); 10-bit
    HEIC refused."""
    import pillow_heif

    photo = Image.open(ROOT / "demos" / "samples" / "astronaut.png")
    photo = photo.convert("RGB").resize((64, 64))
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    photo.save(tmp_path / "IMG_0001.HEIC", format="HEIF", quality=90, exif=exif.tobytes(), xmp=XMP_NO_MINING.encode(),
               thumbnails=[32])
    t2ue.api.protect_file(tmp_path / "IMG_0001.HEIC", tmp_path / "out" / "IMG_0001.HEIC", "an astronaut",
                          model=tiny_noise_model_dir)
    with Image.open(tmp_path / "IMG_0001.HEIC") as original, Image.open(tmp_path / "out" / "IMG_0001.HEIC") as copy:
        assert (copy.format, copy.size, copy.info["chroma"]) == ("HEIF", (64, 64), 444)
        assert original.info["thumbnails"] == [32] and not copy.info["thumbnails"]  # no reduced copy
        assert b"DMI-PROHIBITED" in copy.info["xmp"] and copy.getexif()[0x010F] == "Apple"
        pixels = np.asarray(original.convert("RGB"), dtype=float)
        intended = np.asarray(t2ue.protect(original.convert("RGB"), "an astronaut", model=tiny_noise_model_dir),
                              dtype=float) - pixels
        change = np.asarray(copy.convert("RGB"), dtype=float) - pixels
        assert (change * intended).sum() / (intended * intended).sum() > 0.7  # the noise is on it, HEVC or not
    deep = np.random.default_rng(0).integers(0, 1023, (16, 16, 3)).astype(np.uint16) * 64
    pillow_heif.from_bytes(mode="RGB;16", size=(16, 16), data=deep.tobytes()).save(tmp_path / "hdr.heic")
    with pytest.raises(t2ue.io.images.ImageError, match="hdr.heic: 10 bits per channel"):
        t2ue.api.protect_file(tmp_path / "hdr.heic", tmp_path / "out" / "hdr.heic", "x", model=tiny_noise_model_dir)


def test_cli_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"t2ue {t2ue.__version__}"


@pytest.mark.parametrize("name", ["wide.jpg", "wide.png", "wide.webp"])
def test_protect_file_keeps_the_colour_profile(tiny_noise_model_dir, tmp_path, name):
    """A photo's ICC profile travels with the copy, or its colours would shift in every viewer."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # anything but a default sRGB
    Image.new("RGB", (20, 16), (90, 140, 200)).save(tmp_path / name, icc_profile=profile)
    t2ue.api.protect_file(tmp_path / name, tmp_path / "out" / name, "a blue card", model=tiny_noise_model_dir)
    with Image.open(tmp_path / "out" / name) as copy:
        assert copy.info.get("icc_profile") == profile


def test_models_lists_the_installed_folders(tmp_path, monkeypatch, tiny_noise_model_dir):
    import shutil

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["default", "robust"] and all("bundled" in line for line in lines)
    assert "Fashion-MNIST" in result.output  # the model cards' first paragraph
    shutil.copytree(tiny_noise_model_dir, tmp_path / "zoo" / "mine")
    monkeypatch.setenv("T2UE_MODELS_PATH", str(tmp_path / "zoo"))
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and result.output.splitlines()[-1].startswith("mine")
    assert t2ue.noise_from_text("a cat", model="mine", size=16).shape == (1, 3, 16, 16)
    missing = CliRunner().invoke(app, ["noise", "a cat", "--model", "nosuch", "-o", str(tmp_path / "n.npy")])
    assert missing.exit_code == 2 and "no such noise model" in missing.output and "default, robust" in missing.output