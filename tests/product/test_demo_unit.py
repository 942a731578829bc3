import base64
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

gr = pytest.importorskip("gradio")


def test_demo_sets_privacy_environment_itself():
    import t2ue.demo.app  # noqa: F401

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def _assert_payload_is_noise(payload: dict, text: str, model) -> None:
    """The payload's PNG, mapped back to [-eps, eps], is the text's noise within the 8-bit transport."""
    import t2ue

    png = Image.open(io.BytesIO(base64.b64decode(payload["png"].split(",", 1)[1])))
    decoded = (np.asarray(png, dtype=np.float32) / 127.5 - 1) * payload["epsilon"]
    noise = t2ue.noise_from_text([text], size=None, model=model)[0].permute(1, 2, 0).numpy()
    assert np.abs(decoded - noise).max() <= payload["epsilon"] / 127.5  # half a level each way


def test_noise_payload_decodes_to_the_noise(tiny_noise_model_dir):
    from t2ue.demo.app import MAX_TEXT_CHARS, MAX_TEXTS_PER_CALL, noise_payload, noise_payloads

    payload = json.loads(noise_payload("a cat on a sofa", model=tiny_noise_model_dir))
    _assert_payload_is_noise(payload, "a cat on a sofa", tiny_noise_model_dir)
    with pytest.raises(gr.Error):
        noise_payload("   ", model=tiny_noise_model_dir)
    for bad in ([], ["a cat", "  "], ["x"] * (MAX_TEXTS_PER_CALL + 1), "a cat", [None], ["a" * (MAX_TEXT_CHARS + 1)]):
        with pytest.raises(gr.Error):
            noise_payloads(bad, model=tiny_noise_model_dir)
    with pytest.raises(gr.Error, match="too long"):
        noise_payload("a cat " * 2000, model=tiny_noise_model_dir)  # refused before any work, however long


def test_a_refused_request_is_one_log_line_without_a_traceback(tiny_noise_model_dir, caplog, capsys):
    from t2ue.demo.app import noise_payloads

    with pytest.raises(gr.Error) as caught:
        noise_payloads([], model=tiny_noise_model_dir)
    assert caught.value.print_exception is False and "got 0 descriptions" in str(caught.value)
    assert [r.getMessage() for r in caplog.records if r.name == "t2ue.demo"] == [
        "refused /noises: Send a list of 1 to 256 descriptions (got 0 descriptions)."]
    assert "0x" not in str(caught.value)


def test_protect_uploads_limits_reports_and_zips(tiny_noise_model_dir, tmp_path):
    from t2ue.demo.app import protect_uploads

    paths = []
    for name, size in (("a.png", (30, 20)), ("b.jpg", (16, 16)), ("big.png", (400, 400))):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    (tmp_path / "bad.png").write_bytes(b"not an image")
    paths.append(str(tmp_path / "bad.png"))
    gallery, rows, outputs, report = protect_uploads(paths, "a noisy square", 8, model=tiny_noise_model_dir,
                                                     max_mb=0.1, progress=gr.Progress())
    status = {r[0]: r[3] for r in rows}
    assert status["a.png"] == "ok" and status["b.jpg"] == "ok"
    assert "limit" in status["big.png"] and "bad.png" in status["bad.png"]
    assert len(gallery) == 6  # original, protected, noise for each protected photo
    with zipfile.ZipFile(outputs[-1]) as zf:  # named so that no download passes for the original
        assert sorted(zf.namelist()) == ["a-protected.png", "b-protected.jpg"]
    with pytest.raises(gr.Error, match="description"):
        protect_uploads(paths[:1], "  ", 8, model=tiny_noise_model_dir, progress=gr.Progress())
    with pytest.raises(gr.Error, match="descriptions"):
        protect_uploads(paths[:3], "one\ntwo", 8, model=tiny_noise_model_dir, progress=gr.Progress())


def test_local_tab_fills_in_the_photos_own_descriptions(tmp_path, described_photo):
    """An empty descriptions box gets one line per uploaded photo from its metadata when every photo has
    one; words already typed, or a photo without a description, leave the box as it is."""
    from t2ue.demo.app import embedded_descriptions

    a = str(described_photo(tmp_path / "a.jpg", "xmp", "a dog on the beach"))
    b = str(described_photo(tmp_path / "b.png", "png-text", "my garden in spring"))
    plain = str(described_photo(tmp_path / "c.png", "none", ""))
    assert embedded_descriptions([a, b], "") == "a dog on the beach\nmy garden in spring"
    assert embedded_descriptions([a, b], "our trip") == "our trip"
    assert embedded_descriptions([a, plain], "") == ""
    (tmp_path / "bad.jpg").write_bytes(b"no photo")
    assert embedded_descriptions([a, str(tmp_path / "bad.jpg")], "") == ""


def test_local_tab_previews_a_large_photo_and_its_exact_noise(tiny_noise_model_dir, tmp_path):
    """A photo wider than the preview side is shown reduced, and the amplified noise is the protected copy
    minus the original at the sampled pixels, not an average that would smooth the noise away."""
    from t2ue.demo.app import PREVIEW_SIDE, protect_uploads
    from t2ue.io.images import noise_levels

    width = 2 * PREVIEW_SIDE + 5  # shown at every third pixel: 1 367 x 7
    photo = tmp_path / "wide.png"
    pixels = np.random.default_rng(3).integers(0, 255, (21, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(photo)
    gallery, rows, outputs, _ = protect_uploads([str(photo)], "a striped scarf", 8, model=tiny_noise_model_dir,
                                                progress=gr.Progress(), out_root=tmp_path)
    assert rows[0][3] == "ok" and all(image.size == (1367, 7) for image, _ in gallery)
    assert "preview" in gallery[0][1]
    protected = np.asarray(Image.open(outputs[0]), dtype=np.float32)
    diff = (protected - pixels)[::3, ::3] / 255
    assert np.array_equal(np.asarray(gallery[2][0]), noise_levels(diff, 8 / 255))


def test_the_demos_files_are_swept_and_abandoned_folders_removed(tiny_noise_model_dir, tmp_path):
    """Uploads, previews and copies live in the server's private folder, swept of anything older than an
    hour; gradio's cache keeps nothing longer either; a killed server's folder goes when the next starts."""
    import os
    import subprocess
    import sys

    from t2ue.demo.app import build_app, protect_uploads
    from t2ue.demo.files import RETENTION_S, DemoFiles

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    left = tmp_path / f"t2ue-demo-{dead}-abcd1234"
    (left / "outputs").mkdir(parents=True)
    (left / "outputs" / "someones-photo.jpg").write_bytes(b"x")
    files = DemoFiles(tmp_path)
    assert not left.exists() and files.root.exists() and (files.root.stat().st_mode & 0o777) == 0o700
    photo = tmp_path / "p.png"
    Image.new("RGB", (12, 12), (20, 40, 60)).save(photo)
    _, _, old, _ = protect_uploads([str(photo)], "a dark card", 8, model=tiny_noise_model_dir,
                                   progress=gr.Progress(), out_root=files.outputs)
    _, _, new, _ = protect_uploads([str(photo)], "a dark card", 8, model=tiny_noise_model_dir,
                                   progress=gr.Progress(), out_root=files.outputs)
    for path in Path(old[0]).parent.rglob("*"):
        os.utime(path, (0, 0))  # from long ago
    files.sweep()
    assert not Path(old[0]).exists() and Path(new[0]).exists()
    frequency, age = build_app(tiny_noise_model_dir, files=files).delete_cache
    assert frequency + age <= RETENTION_S
    files.remove()
    assert not files.root.exists()


def test_served_noise_endpoint_and_zero_contact_only(tiny_noise_model_dir):
    """A client fetches noise by name over HTTP, one description or a list of them; --zero-contact-only
    serves no endpoint that takes photos."""
    from gradio_client import Client

    from t2ue.demo.app import build_app

    for local_tab, endpoints in ((False, {"/noise", "/noises"}), (True, {"/noise", "/noises", "/protect"})):
        app = build_app(tiny_noise_model_dir, local_tab=local_tab)
        app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)  # gradio picks a free port
        try:
            client = Client(app.local_url, verbose=False)
            assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == endpoints
            assert any(c["type"] == "file" for c in app.config["components"]) == local_tab  # no upload field when text-only
            if not local_tab:
                payload = json.loads(client.predict("a cat on a sofa", api_name="/noise"))
                _assert_payload_is_noise(payload, "a cat on a sofa", tiny_noise_model_dir)
                texts = ["a dog on the beach", "a cat on a sofa", "my garden in spring"]
                payloads = json.loads(client.predict(texts, api_name="/noises"))  # an album's words at once, in order
                assert len(payloads) == 3
                for text, each in zip(texts, payloads):
                    _assert_payload_is_noise(each, text, tiny_noise_model_dir)
                    alone = json.loads(client.predict(text, api_name="/noise"))
                    assert alone["png"] == each["png"]  # a description gets the same noise alone or in an album
        finally:
            app.close()
