"""The demo in a real headless Chromium: zero-contact protection, proven from the page's own requests."""

from __future__ import annotations

import io
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (make browser installs it)")
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "demo-zero-contact.png"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "HF_"))}  # the app must set them
    log = tmp_path_factory.mktemp("demo") / "server.log"
    with log.open("w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "t2ue", "demo", "--port", str(port)], stdout=handle,
                                stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"demo exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError(f"demo did not start: {log.read_text()[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-background-networking", "--disable-gpu",
                                    "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def _make_noise(page, server: str, text: str) -> None:
    """Open the zero-contact tab and have the server make noise for ``text``."""
    page.goto(server)
    page.get_by_label("Description").first.fill(text)
    page.locator("#t2ue-zc-make").click()
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('Noise ready')",
                           timeout=60_000)


def _protect_in_page(page, server: str, photo: Path, text: str, out: Path) -> None:
    """Make noise for ``text``, choose ``photo`` in the zero-contact tab and save the download to ``out``."""
    _make_noise(page, server, text)
    page.locator("#t2ue-photo").set_input_files(str(photo))
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('Protected')",
                           timeout=60_000)
    with page.expect_download() as info:
        page.locator("#t2ue-download").click()
    info.value.save_as(out)


def test_zero_contact_never_sends_the_photo(server, browser, tmp_path):
    from skimage import data

    photo = tmp_path / "coffee.png"
    Image.fromarray(data.coffee()).save(photo)
    photo_bytes = photo.read_bytes()
    page = browser.new_page(viewport={"width": 1200, "height": 1100}, accept_downloads=True)
    requests = []
    page.on("request", lambda r: requests.append((r.url, r.post_data_buffer or b"")))
    out = tmp_path / "downloaded.png"
    _protect_in_page(page, server, photo, "a cup of coffee on a saucer seen from above", out)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(tmp_path / "shot.png"), full_page=True)
    if os.environ.get("T2UE_UPDATE_SCREENSHOT") == "1":
        shutil.copy(tmp_path / "shot.png", SCREENSHOT)

    original = np.asarray(Image.open(photo).convert("RGB"), dtype=int)
    protected = np.asarray(Image.open(out).convert("RGB"), dtype=int)
    assert protected.shape == original.shape
    diff = np.abs(protected - original)
    assert diff.max() <= 9  # 8/255 plus the browser's 8-bit noise decoding
    assert diff.mean() > 0.5  # and it really was perturbed

    assert requests, "the page made no requests at all?"
    assert all(url.startswith(server) or url.startswith(("data:", "blob:")) for url, _ in requests), \
        [u for u, _ in requests if not u.startswith(server)]
    chunks = [photo_bytes[i : i + 64] for i in range(0, len(photo_bytes) - 64, len(photo_bytes) // 16)]
    for url, body in requests:
        assert not any(chunk in body for chunk in chunks), f"photo bytes sent to {url}"
    page.close()


def test_zero_contact_keeps_a_phone_photo_upright(server, browser, tmp_path):
    """A phone JPEG stores its pixels sideways with an EXIF orientation; the copy saved by the page must
    be the photo as people see it (the page's PNG carries no EXIF to turn it)."""
    from PIL import ImageOps
    from skimage import data

    pixels = data.astronaut()[::4, ::3]  # 128 x 171: not square, so a lost rotation shows in the size
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    photo = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(photo, quality=95, exif=exif)
    page = browser.new_page(accept_downloads=True)
    out = tmp_path / "phone-protected.png"
    _protect_in_page(page, server, photo, "an astronaut in a white suit with a flag", out)
    page.close()
    upright = np.asarray(ImageOps.exif_transpose(Image.open(photo)).convert("RGB"), dtype=int)
    protected = np.asarray(Image.open(out).convert("RGB"), dtype=int)
    assert protected.shape == upright.shape == (171, 128, 3)
    assert np.abs(protected - upright).max() <= 8 + 3  # the budget, plus the browser's own JPEG decoding
    assert np.abs(protected - upright[::-1, ::-1]).mean() > 4 * np.abs(protected - upright).mean()  # not 270 degrees


def test_zero_contact_protects_an_album_into_one_zip(server, browser, tmp_path):
    """Several photos at once, saved as JPEG: one zip of every readable one, the unreadable one named,
    and what the page added is the noise the library makes for the same words (the browser's own
    JPEG encoder keeps most of it)."""


    from skimage import data

    import t2ue

    names = {"astronaut.jpg": data.astronaut(), "chelsea.png": data.chelsea()}
    for name, pixels in names.items():
        Image.fromarray(pixels).save(tmp_path / name, quality=95)
    (tmp_path / "notes.jpg").write_text("a shopping list, not a photo")
    text = "our holiday pictures"
    page = browser.new_page(accept_downloads=True)
    requests = []
    page.on("request", lambda r: requests.append(r.post_data_buffer or b""))
    _make_noise(page, server, text)
    page.locator("#t2ue-format").select_option("jpeg")
    page.locator("#t2ue-photo").set_input_files([str(tmp_path / n) for n in (*names, "notes.jpg")])
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('Protected 2')",
                           timeout=60_000)
    status = page.locator("#t2ue-zc-status").inner_text()
    assert "notes.jpg: this browser cannot read it" in status
    assert page.locator("#t2ue-downloads a").count() == 2
    with page.expect_download() as info:
        page.locator("#t2ue-download").click()
    assert info.value.suggested_filename == "protected.zip"
    archive = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    assert archive.testzip() is None
    assert sorted(archive.namelist()) == ["astronaut-protected.jpg", "chelsea-protected.jpg"]
    noise = t2ue.noise_from_text([text], size=None)[0]
    for name in names:
        original = Image.open(tmp_path / name).convert("RGB")
        protected = Image.open(io.BytesIO(archive.read(name.rsplit(".", 1)[0] + "-protected.jpg")))
        assert protected.format == "JPEG" and protected.size == original.size
        added = np.asarray(protected, dtype=float) - np.asarray(original, dtype=float)
        expected = np.asarray(t2ue.apply_noise(original, noise), dtype=float) - np.asarray(original, dtype=float)
        kept = float(np.corrcoef(added.ravel(), expected.ravel())[0, 1])
        assert kept > 0.8, (name, kept)
    photo_bytes = [(tmp_path / n).read_bytes() for n in names]
    assert not any(chunk[4096:4160] in body for body in requests for chunk in photo_bytes)
    page.close()


def test_zero_contact_gives_each_photo_the_noise_of_its_own_description(server, browser, tmp_path):
    """Described one by one, each photo of an album gets the noise of its own words (fetched through the
    app's /noise endpoint: only the words are sent) and a photo left blank the noise of the words above."""


    from skimage import data

    import t2ue

    photos = {"astronaut.png": data.astronaut()[::2, ::2], "chelsea.png": data.chelsea(),
              "coffee.png": data.coffee()[::2, ::2]}
    for name, pixels in photos.items():
        Image.fromarray(pixels).save(tmp_path / name)
    words = {"astronaut.png": "an astronaut in a white suit with a flag", "chelsea.png": "a ginger cat on a rug",
             "coffee.png": "our holiday pictures"}  # the last: no words of its own, the ones above
    page = browser.new_page(accept_downloads=True)
    requests = []
    page.on("request", lambda r: requests.append(r.post_data_buffer or b""))
    _make_noise(page, server, words["coffee.png"])
    page.locator("#t2ue-photo").set_input_files([str(tmp_path / n) for n in photos])
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('Protected 3')",
                           timeout=60_000)
    page.locator("#t2ue-each summary").click()
    inputs = page.locator("#t2ue-each-list textarea")
    assert inputs.count() == 3
    inputs.nth(0).fill(words["astronaut.png"])
    inputs.nth(1).fill(words["chelsea.png"])
    page.evaluate("() => { document.querySelector('#t2ue-zc-status').textContent = ''; }")
    page.locator("#t2ue-each-make").click()
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('Protected 3')",
                           timeout=60_000)
    with page.expect_download() as info:
        page.locator("#t2ue-download").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    noises = dict(zip(words.values(), t2ue.noise_from_text(list(words.values()), size=None)))
    for name, text in words.items():
        original = Image.open(tmp_path / name).convert("RGB")
        added = np.asarray(Image.open(io.BytesIO(archive.read(name[:-4] + "-protected.png"))).convert("RGB"), float) - np.asarray(
            original, float)
        kept = {other: float(np.corrcoef(added.ravel(), (np.asarray(t2ue.apply_noise(original, noise), float)
                                                             - np.asarray(original, float)).ravel())[0, 1])
                for other, noise in noises.items()}
        assert kept[text] > 0.95 and all(kept[text] > value + 0.1 for other, value in kept.items() if other != text), \
            (name, kept)
    sent = b"".join(requests)
    assert words["astronaut.png"].encode() in sent and words["chelsea.png"].encode() in sent
    photo_bytes = [(tmp_path / n).read_bytes() for n in photos]
    assert not any(chunk[4096:4160] in body for body in requests for chunk in photo_bytes)
    page.close()


def test_zero_contact_reads_descriptions_from_the_photos_xmp(server, browser, tmp_path, described_photo):
    """Photos whose XMP holds a description (as Lightroom or Apple Photos write it) fill their lines in, in
    the page, for the user to read; nothing is sent until they make the noise."""
    paths = [described_photo(tmp_path / "beach.jpg", "xmp", "a dog on  the beach"),
             described_photo(tmp_path / "plain.png", "none", ""),
             described_photo(tmp_path / "garden.png", "xmp", "my garden in spring")]
    page = browser.new_page()
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(server)
    page.wait_for_load_state("networkidle")
    before = len(requests)
    page.locator("#t2ue-photo").set_input_files([str(p) for p in paths])
    page.wait_for_function("() => document.querySelector('#t2ue-each').open", timeout=30_000)
    values = page.locator("#t2ue-each-list textarea").evaluate_all("(inputs) => inputs.map((i) => i.value)")
    assert values == ["a dog on the beach", "", "my garden in spring"]
    assert not [url for url in requests[before:] if "gradio_api/call" in url]  # nothing asked of the server
    page.close()


OPFS_FILES = """async (wanted) => {
  const root = await navigator.storage.getDirectory(), sizes = {};
  for await (const [name, handle] of root.entries()) sizes[name] = (await handle.getFile()).size;
  const bytes = wanted ? Array.from(new Uint8Array(await (await (await root.getFileHandle(wanted)).getFile())
    .arrayBuffer())) : null;
  return { sizes, bytes };
}"""


def test_zero_contact_protects_a_large_album_into_a_folder(server, browser, tmp_path):
    """Beyond a dozen photos the page waits for a folder instead of holding every copy in memory, then
    writes each protected copy there (the folder picker answered with the origin's private file system,
    the same kind of directory handle a picked folder is), keeps a file already there, names the
    unreadable one, and writes the noise the library makes for the same words."""
    from skimage import data

    import t2ue

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.jpg", quality=95)
    Image.fromarray(data.chelsea()).save(tmp_path / "chelsea.png")
    small = [f"s{i}.png" for i in range(10)]
    for i, name in enumerate(small):
        Image.new("RGB", (40, 30), (20 * i, 90, 200 - 15 * i)).save(tmp_path / name)
    (tmp_path / "notes.jpg").write_text("a shopping list, not a photo")
    chosen = ["astronaut.jpg", "chelsea.png", *small, "notes.jpg"]
    text = "our holiday pictures"
    page = browser.new_page()
    page.add_init_script("window.showDirectoryPicker = async () => navigator.storage.getDirectory();")
    requests = []
    page.on("request", lambda r: requests.append(r.post_data_buffer or b""))
    _make_noise(page, server, text)
    page.evaluate("""async () => {  // a copy from an earlier day, to be kept as it is
      const root = await navigator.storage.getDirectory();
      for await (const name of root.keys()) await root.removeEntry(name);
      const w = await (await root.getFileHandle("chelsea-protected.jpg", { create: true })).createWritable();
      await w.write("old"); await w.close();
    }""")
    page.locator("#t2ue-format").select_option("jpeg")
    page.locator("#t2ue-photo").set_input_files([str(tmp_path / n) for n in chosen])
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('13 photos chosen')",
                           timeout=60_000)
    assert not page.locator("#t2ue-download").is_visible()  # nothing protected into memory
    page.locator("#t2ue-folder").click()
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('Saved')",
                           timeout=120_000)
    status = page.locator("#t2ue-zc-status").inner_text()
    assert "Saved 11 protected photos" in status and "Already there, kept: chelsea-protected.jpg" in status
    assert "notes.jpg: this browser cannot read it" in status
    found = page.evaluate(OPFS_FILES, "astronaut-protected.jpg")
    assert sorted(found["sizes"]) == sorted(["astronaut-protected.jpg", "chelsea-protected.jpg",
                                             *(n[:-4] + "-protected.jpg" for n in small)])
    assert found["sizes"]["chelsea-protected.jpg"] == 3  # not written over
    protected = Image.open(io.BytesIO(bytes(found["bytes"])))
    original = Image.open(tmp_path / "astronaut.jpg").convert("RGB")
    assert protected.format == "JPEG" and protected.size == original.size
    noise = t2ue.noise_from_text([text], size=None)[0]
    added = np.asarray(protected, dtype=float) - np.asarray(original, dtype=float)
    expected = np.asarray(t2ue.apply_noise(original, noise), dtype=float) - np.asarray(original, dtype=float)
    assert float(np.corrcoef(added.ravel(), expected.ravel())[0, 1]) > 0.8
    photo_bytes = [(tmp_path / n).read_bytes() for n in ("astronaut.jpg", "chelsea.png")]
    assert not any(chunk[4096:4160] in body for body in requests for chunk in photo_bytes)
    page.close()


def test_local_tab_reports_bad_files_and_protects_good_ones(server, browser, tmp_path):
    good = tmp_path / "cat.jpg"
    Image.fromarray(np.full((40, 50, 3), 120, np.uint8)).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a photo")
    page = browser.new_page()
    page.goto(server)
    page.get_by_role("tab", name="Local (this machine)").click()
    page.locator("#t2ue-local-files input[type=file]").set_input_files([str(good), str(bad)])
    page.locator("#t2ue-local-files").get_by_text("broken", exact=True).wait_for(timeout=30_000)
    page.wait_for_load_state("networkidle")  # both uploads finished
    page.get_by_label("Descriptions: one line for all, or one per photo").fill("a grey card")
    page.get_by_role("button", name="Protect").click()
    report = page.locator("#t2ue-local-report")
    report.get_by_text(re.compile(r"broken\.jpg: damaged or truncated image")).wait_for(timeout=60_000)
    assert "cat.jpg: PSNR" in report.inner_text()
    assert page.get_by_text("/tmp/").count() == 0  # the server's temp paths are not shown
    page.close()


def test_local_tab_fills_in_descriptions_from_the_photos(server, browser, tmp_path, described_photo):
    """Photos whose apps wrote descriptions into them fill the local tab's box, one line each, and the
    filled box protects them."""
    first = described_photo(tmp_path / "beach.jpg", "xmp", "a dog on the beach")
    second = described_photo(tmp_path / "garden.png", "png-text", "my garden in spring")
    page = browser.new_page()
    page.goto(server)
    page.get_by_role("tab", name="Local (this machine)").click()
    page.locator("#t2ue-local-files input[type=file]").set_input_files([str(first), str(second)])
    box = page.get_by_label("Descriptions: one line for all, or one per photo")
    page.wait_for_function("() => [...document.querySelectorAll('textarea')].some("
                           "t => t.value === 'a dog on the beach\\nmy garden in spring')", timeout=30_000)
    assert box.input_value() == "a dog on the beach\nmy garden in spring"
    page.get_by_role("button", name="Protect").click()
    report = page.locator("#t2ue-local-report")
    report.get_by_text(re.compile(r"garden\.png: PSNR")).wait_for(timeout=60_000)
    assert "beach.jpg: PSNR" in report.inner_text()
    page.close()


def test_zero_contact_page_shows_each_photo_before_and_after_in_plain_words(server, browser, tmp_path):
    """Every protected photo is shown beside its original; the download is the page's big button; the status
    says in plain words how far colours moved, and for JPEG measures the file as saved (issue 37, 13-14)."""
    from skimage import data

    names = {"astronaut.png": data.astronaut()[::2, ::2], "chelsea.png": data.chelsea()}
    for name, pixels in names.items():
        Image.fromarray(pixels).save(tmp_path / name)
    page = browser.new_page(viewport={"width": 1200, "height": 1100}, accept_downloads=True)
    _make_noise(page, server, "a photo from our trip")
    page.locator("#t2ue-photo").set_input_files([str(tmp_path / n) for n in names])
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('Protected 2')",
                           timeout=60_000)
    status = page.locator("#t2ue-zc-status").inner_text()
    assert "±" not in status and re.search(r"changed by at most [0-9] of 255 steps", status), status
    assert page.locator("#t2ue-downloads figure").count() == 4
    captions = page.locator("#t2ue-downloads figcaption").all_inner_texts()
    assert captions == ["before", "after (protected)"] * 2
    assert page.locator("#t2ue-downloads img").evaluate_all("(imgs) => imgs.every((i) => i.naturalWidth > 0)")
    button = page.locator("#t2ue-download").bounding_box()
    assert button["height"] >= 40 and button["width"] >= 150
    folder = page.locator("#t2ue-folder")
    if folder.is_visible():
        assert folder.bounding_box()["height"] < button["height"]
    page.locator("#t2ue-each summary").click()
    box, row = page.locator("#t2ue-each-list textarea").first, page.locator("#t2ue-each-list li").first
    assert box.bounding_box()["width"] >= 0.8 * row.bounding_box()["width"]  # long descriptions fit

    page.locator("#t2ue-format").select_option("jpeg")
    page.wait_for_function("() => document.querySelector('#t2ue-zc-status').textContent.includes('as JPEG')",
                           timeout=60_000)
    claimed = int(re.search(r"at most (\d+) of 255 steps from your photo",
                            page.locator("#t2ue-zc-status").inner_text()).group(1))
    with page.expect_download() as info:
        page.locator("#t2ue-download").click()
    archive = zipfile.ZipFile(io.BytesIO(Path(info.value.path()).read_bytes()))
    moved = max(int(np.abs(np.asarray(Image.open(io.BytesIO(archive.read(name[:-4] + "-protected.jpg"))).convert("RGB"),
                                      int) - np.asarray(Image.open(tmp_path / name).convert("RGB"), int)).max())
                for name in names)
    assert claimed > 8 and abs(claimed - moved) <= 2  # what the file holds, not the noise's ±8
    page.close()
