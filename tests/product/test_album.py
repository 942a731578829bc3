"""protect_folder, the one album loop, from Python: no command line needed."""

import numpy as np
from PIL import Image

import t2ue
from t2ue.io.manifest import read_manifest


def _album(folder, names):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_a_python_caller_protects_a_folder_with_words_per_photo(tmp_path, tiny_noise_model_dir):
    album = _album(tmp_path / "album", ["a.png", "b.png", "c.jpg"])
    seen = []
    report = t2ue.protect_folder(album, tmp_path / "out", texts={album / "a.png": "a red door", album / "b.png": "a dog"},
                                 text="our garden", model=tiny_noise_model_dir,
                                 on_photo=lambda outcome, original, protected: seen.append((outcome, protected)))
    assert report.count("protected") == 3 and report.failed == 0 and report.summary() == "3 protected"
    words = {o.source.name: o.words for o, _ in seen}
    assert words == {"a.png": "a red door", "b.png": "a dog", "c.jpg": "our garden"}
    assert all(protected.size == (32, 24) and o.psnr > 30 for o, protected in seen)
    assert sorted(read_manifest(tmp_path / "out")) == ["a.png", "b.png", "c.jpg"]
    alone = t2ue.protect(album / "a.png", "a red door", model=tiny_noise_model_dir)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "a.png")), np.asarray(alone))


def test_a_dry_run_writes_nothing_and_failures_do_not_stop_the_rest(tmp_path, tiny_noise_model_dir):
    album = _album(tmp_path / "album", ["a.png", "b.png"])
    (album / "broken.png").write_bytes(b"not a png")
    dry = t2ue.protect_folder(album, tmp_path / "out", text="a cat", dry_run=True)
    assert dry.count("planned") == 2 and not (tmp_path / "out").exists()
    assert dry.summary() == "2 would be protected, 1 would fail; nothing written (dry run)"
    report = t2ue.protect_folder(album, tmp_path / "out", text="a cat", model=tiny_noise_model_dir)
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert report.count("protected") == 2 and len(failed) == 1 and "broken.png" in failed[0].message
    assert report.summary() == "2 protected, 1 failed"
