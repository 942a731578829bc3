"""Every failure a tough tester found in `t2ue protect` and the Python API, each kept fixed (issue 37, 1-10)."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import t2ue
from t2ue.api import protect_file_with_noise
from t2ue.cli import app
from t2ue.io.images import ImageError, apply_noise, check_image, save_image
from t2ue.io.manifest import MANIFEST, read_manifest
from t2ue.photos import Captions

runner = CliRunner()


def _photos(folder, count, size=(64, 48), suffix="png"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"IMG_{i:02d}.{suffix}")
    return folder


def _assert_copies_left_out(protected, dest, model_dir, message):
    """Protecting t2ue's own copies again leaves every one of them out, and says so."""
    again = runner.invoke(app, ["protect", str(protected), "--text", "a", "-o", str(dest), "--model", str(model_dir)])
    assert again.exit_code == 1 and message in again.output, again.output


def _copies(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


# 1. An interrupted album keeps its record, and a killed writer's part file is cleaned up


def test_an_interrupted_album_lists_every_copy_it_wrote(tiny_noise_model_dir, tmp_path):
    album = _photos(tmp_path / "album", 30, size=(1600, 1200), suffix="jpg")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "t2ue", "protect", str(album), "--text", "a garden", "-o", str(out), "-j", "2",
               "--model", str(tiny_noise_model_dir)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and _copies(out)):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    written = _copies(out)
    assert process.returncode == 130 and "interrupted" in err and 0 < len(written) < 30, err
    assert sorted(read_manifest(out)) == written  # every copy renamed into place is listed
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    again = subprocess.run(command, capture_output=True, text=True)  # a plain rerun goes on without complaint
    assert again.returncode == 0, again.stderr
    assert _copies(out) == sorted(p.name for p in album.iterdir()) == sorted(read_manifest(out))
    _assert_copies_left_out(out, tmp_path / "out2", tiny_noise_model_dir, "left out 30 copies t2ue protected earlier")


def test_a_killed_writers_part_file_is_removed_by_the_next_run(tiny_noise_model_dir, tmp_path):
    album = _photos(tmp_path / "album", 2)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".IMG_00.png.k3j9x2a1.{int(dead.stdout)}.part"  # as atomic_path names it, its writer gone
    stale.write_bytes(b"half a png")
    alive = out / f".IMG_01.png.q8w7e6r5.{os.getpid()}.part"  # a writer still running: left alone
    alive.write_bytes(b"being written")
    result = runner.invoke(app, ["protect", str(album), "--text", "a card", "-o", str(out),
                                 "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0, result.output
    assert not stale.exists() and alive.exists() and _copies(out) == ["IMG_00.png", "IMG_01.png"]


# 2. protect_file never writes over its source


def test_protect_file_refuses_to_write_over_its_own_source(tiny_noise_model_dir, tmp_path):
    source = _photos(tmp_path / "album", 1) / "IMG_00.png"
    original = source.read_bytes()
    (tmp_path / "link.png").symlink_to(source)
    os.link(source, tmp_path / "hard.png")
    for target in (source, tmp_path / "album" / "." / "IMG_00.png", tmp_path / "link.png", tmp_path / "hard.png"):
        with pytest.raises(ValueError, match="over the original"):
            t2ue.protect_file(source, target, "a card", model=tiny_noise_model_dir)
    assert source.read_bytes() == original


# 3. Noise that is not finite, or past the budget


def test_apply_noise_refuses_non_finite_noise_and_noise_past_the_budget():
    image = Image.new("RGB", (16, 16), (120, 120, 120))
    noise = torch.full((3, 8, 8), 4 / 255)
    for bad in (float("nan"), float("inf")):
        broken = noise.clone()
        broken[0, 0, 0] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            apply_noise(image, broken)
    with pytest.raises(ValueError, match="past the budget 8/255"):
        apply_noise(image, noise * 4)
    louder = np.asarray(apply_noise(image, noise * 4, epsilon="16/255")).astype(int)
    assert np.abs(louder - 120).max() == 16


# 4. Bad options: one line, exit 2, nothing created


@pytest.mark.parametrize("option", [["--epsilon", "abc"], ["--epsilon", "0"], ["--epsilon", "-1"], ["--epsilon", "300"],
                                    ["--epsilon", "nan"], ["--mode", "bogus"], ["--text", "caf\udcc3"],
                                    ["--jpeg-quality", "0"]])
def test_bad_protect_options_say_so_in_one_line_and_create_nothing(tiny_noise_model_dir, tmp_path, option):
    photo = _photos(tmp_path / "album", 1) / "IMG_00.png"
    out = tmp_path / "out"
    args = ["protect", str(photo), "-o", str(out), "--model", str(tiny_noise_model_dir)]
    args += option if option[0] == "--text" else ["--text", "a card", *option]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Traceback" not in result.output and not out.exists(), result.output
    if option[0] != "--jpeg-quality":  # click's own range check prints its usage line too
        assert len(result.output.strip().splitlines()) == 1 and result.output.startswith("error: ")


def test_invalid_utf8_words_on_the_command_line_are_refused(tiny_noise_model_dir, tmp_path):
    photo = _photos(tmp_path / "album", 1) / "IMG_00.png"
    result = subprocess.run([sys.executable, "-m", "t2ue", "protect", str(photo), "--text", b"caf\xc3", "-o",
                             str(tmp_path / "out"), "--model", str(tiny_noise_model_dir)], capture_output=True, text=True)
    assert result.returncode == 2 and "not valid UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# 5. Captions files


@pytest.mark.parametrize("name, content, message", [
    ("c.csv", "image,caption\nIMG_00.png\n", "line 2 has no caption"),
    ("c.jsonl", '{"image": "IMG_00.png", "caption": null}\n', "line 1 has no caption"),
    ("c.jsonl", '{"image": "IMG_00.png", "caption": "a"}\n{"image": "IMG_01.png", "caption": 42}\n',
     "line 2 has a caption that is not text"),
    ("c.csv", "image,caption\nIMG_00.png,a red door\nIMG_01.png,a dog\nIMG_00.png,a blue door\n",
     "lines 2 and 4 give IMG_00.png two different captions"),
    ("c.csv", "IMG_00.png,a red door\nIMG_01.png,a dog\n", "line 1 should be a header naming the columns image, caption"),
])
def test_bad_captions_files_name_the_file_and_the_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        Captions(tmp_path / name)
    assert str(tmp_path / name) in str(caught.value)


def test_captions_written_by_excel_and_other_encodings(tmp_path):
    (tmp_path / "excel.csv").write_bytes("image,caption\r\nIMG_00.png,un café\r\n".encode("utf-8-sig"))
    assert Captions(tmp_path / "excel.csv").caption(tmp_path / "IMG_00.png") == "un café"
    (tmp_path / "latin.csv").write_bytes("image,caption\nIMG_00.png,un café\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin\.csv: line 2 is not UTF-8"):
        Captions(tmp_path / "latin.csv")
    (tmp_path / "twice.csv").write_text("image,caption\nIMG_00.png,a\nIMG_00.png,a\n")
    assert len(Captions(tmp_path / "twice.csv").photos()) == 1  # the same row twice is no conflict


# 6 and 7. What a file's header shows, the dry run shows; bombs are refused before decoding


def _bad_files(folder):
    folder.mkdir()
    Image.new("RGB", (32, 32), (1, 2, 3)).save(folder / "good.png")
    (folder / "truncated.png").write_bytes((folder / "good.png").read_bytes()[:20])
    Image.new("RGB", (8, 8)).save(folder / "anim.gif")
    Image.new("I;16", (8, 8), 1000).save(folder / "deep.png")
    Image.new("1", (8, 8)).save(folder / "bilevel.png")
    Image.new("1", (15000, 15000)).save(folder / "bomb.png")  # 225 megapixels in a few kilobytes
    return folder


def test_the_dry_run_reports_every_failure_the_real_run_meets(tiny_noise_model_dir, tmp_path):
    album = _bad_files(tmp_path / "album")
    dry = t2ue.protect_folder(album, tmp_path / "out", text="a thing", dry_run=True)
    real = t2ue.protect_folder(album, tmp_path / "out", text="a thing", model=tiny_noise_model_dir)
    failed = {o.source.name for o in dry.outcomes if o.status == "failed"}
    assert failed == {o.source.name for o in real.outcomes if o.status == "failed"}
    assert failed == {"truncated.png", "anim.gif", "deep.png", "bilevel.png", "bomb.png"}
    assert dry.count("planned") == 1 and real.count("protected") == 1
    messages = " ".join(o.message for o in dry.outcomes)
    assert all(words in messages for words in ("damaged or truncated", "256 colours", "16 bits", "mode '1'",
                                               "225 megapixels"))


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path):
    Image.new("1", (15000, 15000)).save(tmp_path / "bomb.png")
    started = time.perf_counter()
    with pytest.raises(ImageError, match="too large to protect"):
        t2ue.protect(tmp_path / "bomb.png", "a white wall")
    assert time.perf_counter() - started < 5  # nothing was decoded
    frames = [Image.new("RGB", (1000, 1000), (i, i, i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="× 3 frames"):
        check_image(tmp_path / "anim.png", max_pixels=2_500_000)  # pixels times frames count
    check_image(tmp_path / "anim.png", max_pixels=3_000_000)


# 8. Budgets that would do nothing or too much; a copy the noise leaves unchanged


def test_a_copy_the_noise_does_not_change_is_not_reported_protected(tmp_path):
    Image.new("RGB", (16, 16), (9, 9, 9)).save(tmp_path / "a.png")
    with pytest.raises(ImageError, match="changed no pixel"):
        protect_file_with_noise(tmp_path / "a.png", tmp_path / "out.png", torch.zeros(3, 4, 4))
    assert not (tmp_path / "out.png").exists()


def test_budgets_outside_one_to_32_levels_are_refused_by_name(tiny_noise_model_dir, tmp_path):
    photo = _photos(tmp_path / "album", 1) / "IMG_00.png"
    for epsilon, words in (("0.0015", "less than one level"), ("0.5", "plainly visible")):
        result = runner.invoke(app, ["protect", str(photo), "--text", "a", "-o", str(tmp_path / "o"), "--epsilon",
                                     epsilon, "--model", str(tiny_noise_model_dir)])
        assert result.exit_code == 2 and words in result.output
    with pytest.raises(ValueError, match="plainly visible"):
        t2ue.noise_from_text("a cat", epsilon=0.5, model=tiny_noise_model_dir)


# 10. The smaller ones


def test_jpeg_quality_must_be_1_to_100(tiny_noise_model_dir, tmp_path):
    photo = _photos(tmp_path / "album", 1, suffix="jpg") / "IMG_00.jpg"
    for quality in (0, -3, 500, True, 9.5):
        with pytest.raises(ValueError, match="jpeg_quality"):
            t2ue.protect_file(photo, tmp_path / "out.jpg", "a card", model=tiny_noise_model_dir, jpeg_quality=quality)
        with pytest.raises(ValueError, match="jpeg_quality"):
            save_image(Image.new("RGB", (4, 4)), tmp_path / "x.jpg", jpeg_quality=quality)
    assert not (tmp_path / "out.jpg").exists()


def test_the_same_photo_named_twice_is_protected_once(tiny_noise_model_dir, tmp_path):
    album = _photos(tmp_path / "album", 1)
    photo = album / "IMG_00.png"
    (tmp_path / "alias.png").symlink_to(photo)
    result = runner.invoke(app, ["protect", str(photo), str(photo), str(album), str(tmp_path / "alias.png"), "--text",
                                 "a card", "-o", str(tmp_path / "out"), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0 and "failed" not in result.output, result.output
    assert _copies(tmp_path / "out") == ["IMG_00.png"]


def test_a_name_with_a_line_break_is_listed_and_left_out_later(tiny_noise_model_dir, tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    Image.new("RGB", (8, 8), (5, 100, 200)).save(album / "two\nlines.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", str(album), "--text", "a", "-o", str(out), "--model", str(tiny_noise_model_dir)])
    assert result.exit_code == 0, result.output
    assert list(read_manifest(out)) == ["two\nlines.png"] and '"two\\nlines.png"' in (out / MANIFEST).read_text()
    _assert_copies_left_out(out, tmp_path / "o2", tiny_noise_model_dir, "left out 1 copy")


def test_a_users_file_put_where_an_earlier_copy_was_is_never_written_over(tiny_noise_model_dir, tmp_path):
    album = _photos(tmp_path / "album", 1)
    out = tmp_path / "out"
    args = ["protect", str(album), "--text", "a card", "-o", str(out), "--model", str(tiny_noise_model_dir)]
    assert runner.invoke(app, args).exit_code == 0
    Image.new("RGB", (30, 30), (0, 255, 0)).save(out / "IMG_00.png")  # the user's own photo, same name
    mine = (out / "IMG_00.png").read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "is not the copy t2ue wrote there" in result.output
    assert (out / "IMG_00.png").read_bytes() == mine


def test_the_api_refuses_gif_as_the_command_line_does(tmp_path):
    Image.new("P", (8, 8)).save(tmp_path / "x.gif")
    with pytest.raises(ImageError, match="256 colours"):
        t2ue.protect(tmp_path / "x.gif", "a card")


def test_odd_inputs_get_clear_errors(tiny_noise_model_dir):
    with pytest.raises(ValueError, match="is NoneType, not text"):
        t2ue.noise_from_text([None], model=tiny_noise_model_dir)
    with pytest.raises(ValueError, match="whole pixels"):
        t2ue.noise_from_text("a cat", size=True, model=tiny_noise_model_dir)
    with pytest.raises(ValueError, match="empty image"):
        apply_noise(Image.new("RGB", (0, 0)), torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match=r"H, W >= 1"):
        apply_noise(Image.new("RGB", (4, 4)), torch.zeros(3, 0, 0))
    with pytest.raises(ValueError, match="10,000"):
        t2ue.noise_from_text("a" * 20_000, model=tiny_noise_model_dir)
