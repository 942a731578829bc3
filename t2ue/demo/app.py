"""The Gradio demo: a zero-contact tab (the photo never leaves the browser) and a local tab.

Offline by construction: telemetry and hub look-ups are switched off before gradio is imported, and
the server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

from t2ue.privacy import set_offline_defaults

set_offline_defaults()

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from t2ue.album import protect_folder  # noqa: E402
from t2ue.api import load_noise_model, noise_from_text  # noqa: E402
from t2ue.budget import parse_epsilon  # noqa: E402
from t2ue.demo.files import RETENTION_S, DemoFiles  # noqa: E402
from t2ue.io.images import ImageError, noise_levels, read_description, ssim  # noqa: E402

MAX_TEXTS_PER_CALL = 256  # /noises: an album's descriptions in one request, within reason
# A description the server takes: the text encoder reads its first few hundred characters at most
MAX_TEXT_CHARS = 1000
# The local tab decodes uploads in the server's memory: pixels x frames of one upload, at most
MAX_MEGAPIXELS = 50
LOG = logging.getLogger("t2ue.demo")
ZERO_CONTACT_JS = (Path(__file__).parent / "static" / "zero_contact.js").read_text()
BIG_BUTTON = ("display:inline-block;margin:0.6em 0;padding:0.8em 1.8em;font-size:1.15em;font-weight:600;"
              "border-radius:8px;text-decoration:none;background:var(--button-primary-background-fill,#ea580c);"
              "color:var(--button-primary-text-color,#fff)")
ZERO_CONTACT_HTML = f"""
<div class="t2ue-zc">
  <label for="t2ue-photo"><b>2. Choose photos</b> (read by this page only, never uploaded)</label><br>
  <input type="file" id="t2ue-photo" accept="image/*" multiple>
  <label for="t2ue-format">Save as</label>
  <select id="t2ue-format">
    <option value="png" selected>PNG: keeps the noise exactly</option>
    <option value="jpeg">JPEG, quality 95: several times smaller, adds JPEG's own small changes</option>
  </select>
  <details id="t2ue-each" style="display:none" data-texts-per-call="{MAX_TEXTS_PER_CALL}">
    <summary>Describe each photo: each then gets noise of its own, which protects better than one noise for all</summary>
    <ol id="t2ue-each-list" style="padding-left:1.5em"></ol>
    <button id="t2ue-each-make" class="lg secondary">Make each photo's noise and protect</button>
  </details>
  <p id="t2ue-zc-status" role="status"></p>
  <a id="t2ue-download" style="display:none;{BIG_BUTTON}">Download protected photo</a>
  <button id="t2ue-folder" style="display:none;font-size:0.85em;padding:0.35em 0.9em" class="sm secondary">
    Protect into a folder instead…</button>
  <ul id="t2ue-downloads" style="list-style:none;padding:0"></ul>
</div>
"""
EPSILON_PRESETS = {"4/255": 4, "8/255": 8, "16/255": 16}


def _payloads(texts: list[str], model) -> list[dict]:
    """Each description's noise: the budget and a PNG whose values map [0, 255] to [-eps, eps]."""
    epsilon = load_noise_model(model).epsilon
    out = []
    for noise in noise_from_text(texts, size=None, model=model):
        levels = noise_levels(noise.permute(1, 2, 0).numpy(), epsilon)
        buffer = io.BytesIO()
        Image.fromarray(levels).save(buffer, format="PNG")
        png = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        out.append({"epsilon": epsilon, "png": png, "size": list(levels.shape[:2])})
    return out


def refuse(where: str, message: str) -> gr.Error:
    """A request refused: one line in the server's log, the message (and no traceback) for the caller."""
    LOG.warning("refused %s: %s", where, message)
    return gr.Error(message, print_exception=False)


def _checked(text, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise refuse(where, "Please type a description of the photo: some words.")
    if len(text) > MAX_TEXT_CHARS:
        raise refuse(where, f"A description of {len(text):,} characters is too long: keep it under "
                            f"{MAX_TEXT_CHARS:,} (only the first few hundred are read).")
    return text.strip()


def noise_payload(text: str, model="default") -> str:
    """Noise for one description as JSON: the budget and a PNG whose values map [0, 255] to [-eps, eps]."""
    return json.dumps(_payloads([_checked(text, "/noise")], model)[0])


def noise_payloads(texts: list[str], model="default") -> str:
    """Noise for several descriptions in one call, as a JSON list of :func:`noise_payload`'s objects in the
    same order; each description's noise is the one it would get alone."""
    if not isinstance(texts, list) or not texts or len(texts) > MAX_TEXTS_PER_CALL:
        count = f"{len(texts)} descriptions" if isinstance(texts, list) else "no list"
        raise refuse("/noises", f"Send a list of 1 to {MAX_TEXTS_PER_CALL} descriptions (got {count}).")
    return json.dumps(_payloads([_checked(t, "/noises") for t in texts], model))


# The local tab's gallery shows photos at most this many pixels on their long side: the browser and
# gradio's cache get a few megapixels per photo, not three full-size copies of a 50 MP one
PREVIEW_SIDE = 2048


def _previews(original: Image.Image, protected: Image.Image, epsilon: float) -> list[Image.Image]:
    """Original, protected and their difference amplified to the full 0-255 range, for the gallery. The
    difference is taken at every k-th pixel of both (not averaged), so that the preview shows the noise's
    own values."""
    step = max(1, -(-max(original.size) // PREVIEW_SIDE))
    rgb = [image.convert("RGB") for image in (original, protected)]
    sampled = [np.asarray(image)[::step, ::step].astype(np.float32) for image in rgb]
    shown = [image.reduce(step) for image in rgb] if step > 1 else rgb
    views = [*(Image.fromarray(np.asarray(image)) for image in shown),  # pixels only: no EXIF, GPS or profile
             Image.fromarray(noise_levels((sampled[1] - sampled[0]) / 255, epsilon))]
    return views


def protect_uploads(files, descriptions: str, epsilon_levels: float, model="default", max_mb: float = 25,
                    progress=gr.Progress(), out_root: Path | None = None, max_megapixels: float = MAX_MEGAPIXELS):
    """Protect each uploaded photo with its description (through :func:`t2ue.album.protect_folder`); returns
    gallery, table, downloads and a report. Outputs go to a fresh folder under ``out_root`` (default: the
    system's temporary folder)."""
    if not files:
        raise gr.Error("Upload at least one photo.")
    lines = [line.strip() for line in (descriptions or "").splitlines() if line.strip()]
    if not lines:
        raise gr.Error("Type a description: one line for all photos, or one line per photo.")
    if len(lines) not in (1, len(files)):
        raise gr.Error(f"{len(files)} photos but {len(lines)} descriptions: give one line, or one per photo.")
    epsilon = parse_epsilon(float(epsilon_levels))
    out_dir = Path(tempfile.mkdtemp(prefix="album-", dir=out_root))
    paths = [Path(getattr(file, "name", file)) for file in files]
    gallery, rows, outputs = [], [], []

    def fail(name: str, message: str) -> None:
        rows.append([name, "", "", message])
        gr.Warning(message)

    accepted = {}
    for i, path in enumerate(paths):
        try:
            if path.stat().st_size > max_mb * 1e6:
                raise ImageError(f"{path.name}: larger than the {max_mb:g} MB limit")
            accepted[path] = lines[0] if len(lines) == 1 else lines[i]
        except (ImageError, OSError) as err:
            fail(path.name, _named(str(err), path))

    def shown(outcome, original, protected) -> None:
        source = outcome.source or next((p for p in accepted if str(p) in outcome.message), None)
        name = source.name if source is not None else "?"
        progress(len(rows) / len(paths), desc="protecting")
        if outcome.status != "protected":
            fail(name, _named(outcome.message, source) if source is not None else outcome.message)
            return
        outputs.append(str(_as_protected(outcome.target)))
        views = _previews(original, protected, epsilon)
        scale = "" if views[0].size == original.size else f" (preview, {views[0].width} × {views[0].height})"
        gallery.extend([(views[0], f"{name}: original{scale}"), (views[1], f"{name}: protected{scale}"),
                        (views[2], f"{name}: noise, amplified{scale}")])
        rows.append([name, f"{outcome.psnr:.2f}", f"{ssim(original, protected):.4f}", "ok"])

    if accepted:
        try:
            protect_folder(list(accepted), out_dir, texts=accepted, model=model, epsilon=epsilon, on_photo=shown,
                           max_pixels=int(max_megapixels * 1e6))
        except (ValueError, OSError) as err:
            fail("", str(err))
    if len(outputs) > 1:
        archive = out_dir / "protected.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for item in outputs:
                zf.write(item, Path(item).name)
        outputs.append(str(archive))
    report = "\n".join(f"* {r[0]}: PSNR {r[1]} dB, SSIM {r[2]}" if r[3] == "ok" else f"* **failed** {r[3]}" for r in rows)
    return gallery, rows, outputs, report


def _as_protected(copy: Path) -> Path:
    """The copy renamed ``photo-protected.jpg`` (as the zero-contact page names its copies), so that a
    download cannot be taken for the original."""
    named = copy.with_name(f"{copy.stem}-protected{copy.suffix}")
    os.replace(copy, named)
    return named


def _named(message: str, path: Path) -> str:
    """A message about an upload with the server's temporary path replaced by the photo's name, which is all
    the person who uploaded it knows."""
    message = message.replace(str(path), path.name)
    return message if message.startswith(path.name) else f"{path.name}: {message}"


def embedded_descriptions(files, descriptions: str) -> str:
    """The local tab's descriptions box, filled in with each uploaded photo's own description (one line
    per photo, :func:`t2ue.io.images.read_description`) when the box is empty and every photo has one."""
    if (descriptions or "").strip() or not files:
        return descriptions
    try:
        found = [read_description(Path(getattr(file, "name", file))) for file in files]
    except ImageError:
        return descriptions  # named when the photos are protected
    return "\n".join(found) if all(found) else descriptions


def build_app(model="default", max_mb: float = 25, local_tab: bool = True, files: DemoFiles | None = None,
              max_megapixels: float = MAX_MEGAPIXELS) -> gr.Blocks:
    """The demo; ``model`` is a noise model folder or 'default'. The zero-contact tab's noise is also an
    API endpoint, ``/noise`` (text in, the JSON of :func:`noise_payload` out), and ``/noises`` takes a list
    (:func:`noise_payloads`), for apps that add the noise on the user's device. ``local_tab=False``
    leaves out the tab that accepts photo uploads, for a server that should only ever receive text."""
    load_noise_model(model)  # load once at start-up, not on the first request
    # gradio's own copies of uploads and outputs: none older than an hour (a check every 5 minutes for files
    # 55 minutes old), and all removed when the app stops
    with gr.Blocks(title="t2ue: protect your photos from AI training", delete_cache=(300, RETENTION_S - 300)) as app:
        gr.Markdown("# t2ue: protect your photos from AI training\nNoise made from a *description* of your photo "
                    "makes it unlearnable for models trained on it, while it looks the same to people.")
        with gr.Tab("Zero-contact (photo stays in your browser)", id="zero-contact"):
            gr.Markdown("**1. Describe the photo.** Only these words are sent to the server; it answers with noise. "
                        "Your photo is read, perturbed and saved by this page alone.")
            text = gr.Textbox(label="Description", placeholder="a selfie of me at the beach", elem_id="t2ue-zc-text")
            make = gr.Button("Make noise", variant="primary", elem_id="t2ue-zc-make")
            payload = gr.Textbox(visible=False, elem_id="t2ue-zc-noise")
            gr.HTML(ZERO_CONTACT_HTML, js_on_load=ZERO_CONTACT_JS)
            make.click(lambda t: noise_payload(t, model), text, payload, concurrency_limit=4,
                       show_progress="full", api_name="noise",
                       api_description="Noise for one description: JSON with the budget and a PNG mapping "
                                       "[0, 255] to [-eps, eps].").then(
                None, payload, None, js="(n) => { window.t2ueZeroContact.t2ueSetNoise(n); }",
                api_visibility="private")

            def noises(texts: list[str]) -> str:
                """Noise for several descriptions at once: a JSON list of what /noise returns, in order."""
                return noise_payloads(texts, model)

            gr.api(noises, api_name="noises", concurrency_limit=4)
        if local_tab:
            _local_tab(model, max_mb, files.outputs if files else None, max_megapixels)
    app.queue(default_concurrency_limit=2, max_size=64)
    return app


def _local_tab(model, max_mb: float, outputs: Path | None, max_megapixels: float) -> None:
    """The tab for an app on the user's own machine: uploads, several photos, budget presets, downloads."""
    with gr.Tab("Local (this machine)", id="local"):
        gr.Markdown("For an app you run on your own computer: photos are uploaded to *this* local server only.")
        with gr.Row():
            files = gr.File(file_count="multiple", file_types=["image"], label=f"Photos (up to {max_mb:g} MB each)",
                            elem_id="t2ue-local-files")
            with gr.Column():
                descriptions = gr.Textbox(lines=4, label="Descriptions: one line for all, or one per photo "
                                          "(filled in from the photos' own, where every photo has one)")
                preset = gr.Radio(list(EPSILON_PRESETS), value="8/255", label="Budget preset")
                epsilon = gr.Slider(1, 16, value=8, step=1, label="Budget ε (levels out of 255)")
                run = gr.Button("Protect", variant="primary")
        preset.change(lambda p: EPSILON_PRESETS[p], preset, epsilon, api_visibility="private")
        files.upload(embedded_descriptions, [files, descriptions], descriptions, api_visibility="private")
        gallery = gr.Gallery(label="original · protected · amplified noise", columns=3, height="auto")
        report = gr.Markdown(elem_id="t2ue-local-report")
        table = gr.Dataframe(headers=["file", "PSNR (dB)", "SSIM", "status"], label="Quality")
        downloads = gr.File(label="Download (each, or all as protected.zip)", file_count="multiple")
        def protect(f, d, e, progress=gr.Progress()):
            return protect_uploads(f, d, e, model, max_mb, progress, out_root=outputs, max_megapixels=max_megapixels)

        run.click(protect,
                  [files, descriptions, epsilon], [gallery, table, downloads, report], concurrency_limit=2,
                  api_name="protect")


def launch(model="default", host: str = "127.0.0.1", port: int = 7860, max_mb: float = 25, share: bool = False,
           local_tab: bool = True, max_megapixels: float = MAX_MEGAPIXELS):
    """Start the demo; binds to 127.0.0.1 unless ``host`` says otherwise. The server's files (uploads,
    previews, copies, gradio's cache) live in one private folder, readable by this user only, swept on a
    timer and removed when the server stops (:mod:`t2ue.demo.files`)."""
    if local_tab and host not in ("127.0.0.1", "localhost", "::1"):
        warnings.warn(f"serving on {host} with the local tab: anyone who can reach it may upload photos to this "
                      "server; --zero-contact-only serves the text-to-noise part alone", stacklevel=2)
    logging.basicConfig(format="%(asctime)s %(name)s: %(message)s", level=logging.INFO)
    os.umask(0o077)  # this process is the server: every file and folder it makes is this user's alone
    files = DemoFiles()
    files.remove_when_stopped()
    files.start_sweeping()
    os.environ.setdefault("GRADIO_TEMP_DIR", str(files.gradio))
    app = build_app(model, max_mb, local_tab, files, max_megapixels)
    app.launch(server_name=host, server_port=port, share=share, max_file_size=f"{max_mb:g}mb",
               show_error=True, footer_links=[])
    return app
