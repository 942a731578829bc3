// Zero-contact protection: the photo is read, perturbed and saved inside this page.
// Only the description went to the server; the noise came back as a PNG (value v -> (v/127.5 - 1) * epsilon).
(function (root) {
  const photoInput = root.querySelector("#t2ue-photo");
  const status = root.querySelector("#t2ue-zc-status");
  const link = root.querySelector("#t2ue-download");
  const preview = root.querySelector("#t2ue-preview");
  let noise = null;   // {epsilon, image: HTMLImageElement}
  let photo = null;   // {bitmap, name}

  function say(text) { status.textContent = text; }

  async function render() {
    if (!noise || !photo) {
      say(noise ? "Noise ready. Choose a photo: it stays in this browser." : "Type a description and make noise first.");
      return;
    }
    const w = photo.bitmap.width, h = photo.bitmap.height;
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(photo.bitmap, 0, 0);
    const pixels = ctx.getImageData(0, 0, w, h);
    const noiseCanvas = document.createElement("canvas");
    noiseCanvas.width = w; noiseCanvas.height = h;
    const nctx = noiseCanvas.getContext("2d", { willReadFrequently: true });
    nctx.imageSmoothingEnabled = true;
    nctx.imageSmoothingQuality = "high";
    nctx.drawImage(noise.image, 0, 0, w, h);   // bilinear resize to the photo, like apply_noise
    const delta = nctx.getImageData(0, 0, w, h).data;
    const p = pixels.data, scale = noise.epsilon * 255 / 127.5;
    for (let i = 0; i < p.length; i += 4) {
      for (let c = 0; c < 3; c++) {           // quantise after adding; alpha untouched
        const v = p[i + c] + (delta[i + c] - 127.5) * scale;
        p[i + c] = Math.min(255, Math.max(0, Math.round(v)));
      }
    }
    ctx.putImageData(pixels, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = photo.name.replace(/\.[^.]+$/, "") + "-protected.png";
    link.style.display = "inline-block";
    preview.src = link.href;
    preview.style.display = "block";
    say(`Protected ${w}×${h} in this browser (±${Math.round(noise.epsilon * 255)}/255). Nothing was uploaded.`);
  }

  photoInput.addEventListener("change", async () => {
    const file = photoInput.files[0];
    if (!file) return;
    try {
      photo = { bitmap: await createImageBitmap(file), name: file.name };
    } catch (err) {
      photo = null;
      say(`${file.name}: this browser cannot read it as an image.`);
      return;
    }
    render();
  });

  root.t2ueSetNoise = (payload) => {
    if (!payload) return;
    const data = typeof payload === "string" ? JSON.parse(payload) : payload;
    if (!data.png) return;
    const img = new Image();
    img.onload = () => { noise = { epsilon: data.epsilon, image: img }; render(); };
    img.src = data.png;
  };
  window.t2ueZeroContact = root;
  say("Type a description and make noise first.");
})(element);
