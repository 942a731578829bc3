// Zero-contact protection: photos are read, perturbed and saved inside this page.
// Only descriptions go to the server; noise comes back as a PNG (value v -> (v/127.5 - 1) * epsilon).
(function (root) {
  const photoInput = root.querySelector("#t2ue-photo");
  const formatInput = root.querySelector("#t2ue-format");
  const status = root.querySelector("#t2ue-zc-status");
  const list = root.querySelector("#t2ue-downloads");
  const link = root.querySelector("#t2ue-download");
  const folderButton = root.querySelector("#t2ue-folder");
  const each = root.querySelector("#t2ue-each");
  const eachList = root.querySelector("#t2ue-each-list");
  const eachMake = root.querySelector("#t2ue-each-make");
  // Browsers that can write into a folder the user picks (Chromium-based, on https or localhost) save an
  // album there copy by copy, holding none of it in memory; beyond a few photos the page then waits for
  // that choice instead of protecting everything into memory first.
  const canWriteFolder = typeof window.showDirectoryPicker === "function" && window.isSecureContext;
  const IN_MEMORY_ALBUM = 12;
  let noise = null;   // {epsilon, image: HTMLImageElement}: the noise of the description above
  let files = [];     // the chosen File objects; decoded one at a time when protected
  let own = [];       // per chosen file: the noise of its own description, or null (then the one above)
  let run = 0;        // a newer render makes an older one stop

  function say(text) { status.textContent = text; }

  function drop(anchor) {
    if (anchor.href.startsWith("blob:")) URL.revokeObjectURL(anchor.href);
  }

  // Add the noise to one decoded photo: resize it to the photo (canvas, bilinear, like apply_noise),
  // add in 8-bit levels and quantise after adding; alpha untouched.
  function perturb(bitmap, noise) {
    const w = bitmap.width, h = bitmap.height;
    const canvas = document.createElement("canvas");
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    const pixels = ctx.getImageData(0, 0, w, h);
    const noiseCanvas = document.createElement("canvas");
    noiseCanvas.width = w; noiseCanvas.height = h;
    const nctx = noiseCanvas.getContext("2d", { willReadFrequently: true });
    nctx.imageSmoothingEnabled = true;
    nctx.imageSmoothingQuality = "high";
    nctx.drawImage(noise.image, 0, 0, w, h);
    const delta = nctx.getImageData(0, 0, w, h).data;
    const p = pixels.data, scale = noise.epsilon * 255 / 127.5;
    const before = formatInput.value === "jpeg" ? new Uint8ClampedArray(p) : null;
    let change = 0;
    for (let i = 0; i < p.length; i += 4) {
      for (let c = 0; c < 3; c++) {
        const v = Math.min(255, Math.max(0, Math.round(p[i + c] + (delta[i + c] - 127.5) * scale)));
        change = Math.max(change, Math.abs(v - p[i + c]));
        p[i + c] = v;
      }
    }
    ctx.putImageData(pixels, 0, 0);
    return { canvas, before, change };
  }

  // How far the saved file's pixels are from the photo's, in steps out of 255: the noise's own for PNG;
  // for JPEG measured on the file as the browser encoded it, since its compression moves pixels too.
  async function changeIn(blob, made) {
    if (!made.before) return made.change;
    const bitmap = await createImageBitmap(blob);
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width; canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const q = ctx.getImageData(0, 0, canvas.width, canvas.height).data, p = made.before;
    let change = 0;
    for (let i = 0; i < q.length; i += 4) {
      for (let c = 0; c < 3; c++) change = Math.max(change, Math.abs(q[i + c] - p[i + c]));
    }
    return change;
  }

  // PNG keeps the noise exactly; JPEG (quality 95, the browser's own encoder) is several times smaller.
  function encode(canvas) {
    const jpeg = formatInput.value === "jpeg";
    return new Promise((resolve) => canvas.toBlob(resolve, jpeg ? "image/jpeg" : "image/png", 0.95))
      .then((blob) => ({ blob, ext: jpeg ? "jpg" : "png" }));
  }

  // A zip of the protected copies, stored without compression (PNG and JPEG are compressed already).
  const CRC = new Uint32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }
  const DOS_DATE = (1 << 5) | 1;  // 1980-01-01: no date of the user's is written
  // A little-endian zip record of ``size`` bytes: [offset, value, width in bytes] per field, zero elsewhere.
  function record(size, fields) {
    const view = new DataView(new ArrayBuffer(size));
    for (const [at, value, width] of fields) {
      if (width === 4) view.setUint32(at, value, true); else view.setUint16(at, value, true);
    }
    return view;
  }
  // The archive refers to the copies' own blobs, so an album is not held twice; only the one being
  // checksummed is read into memory at a time.
  async function zip(entries) {
    const parts = [], central = [];
    let offset = 0;
    for (const { name, blob } of entries) {
      const crc = crc32(new Uint8Array(await blob.arrayBuffer()));
      const utf8 = new TextEncoder().encode(name);
      parts.push(record(30, [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [12, DOS_DATE, 2], [14, crc, 4],
                             [18, blob.size, 4], [22, blob.size, 4], [26, utf8.length, 2]]), utf8, blob);
      central.push(record(46, [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [14, DOS_DATE, 2],
                               [16, crc, 4], [20, blob.size, 4], [24, blob.size, 4], [28, utf8.length, 2],
                               [42, offset, 4]]), utf8);
      offset += 30 + utf8.length + blob.size;
    }
    const size = central.reduce((s, part) => s + part.byteLength, 0);
    const end = record(22, [[0, 0x06054b50, 4], [8, entries.length, 2], [10, entries.length, 2], [12, size, 4],
                            [16, offset, 4]]);
    return new Blob([...parts, ...central, end], { type: "application/zip" });
  }

  // One photo protected: {name, blob, size}, or null when the browser cannot read it as an image.
  async function protectOne(file, noise) {
    let bitmap;
    try {
      // upright as people see it (EXIF orientation); a browser that does not know the option decodes as before
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" })
        .catch((err) => (err instanceof TypeError ? createImageBitmap(file) : Promise.reject(err)));
    } catch (err) {
      return null;
    }
    const made = perturb(bitmap, noise);
    const size = `${bitmap.width}×${bitmap.height}`;
    bitmap.close();
    const { blob, ext } = await encode(made.canvas);
    const change = await changeIn(blob, made);
    return { name: file.name.replace(/\.[^.]+$/, "") + "-protected." + ext, blob, size, change };
  }
  const unreadable = (file) => `${file.name}: this browser cannot read it as an image`;

  function clearResults() {
    for (const a of list.querySelectorAll("a, img")) drop(a.href ? a : { href: a.src });
    list.replaceChildren();
    drop(link);
    link.style.display = "none";
  }

  // One photo's line of the results: the photo and its protected copy side by side, and the copy's link.
  function resultItem(file, made, href) {
    const item = document.createElement("li");
    item.style.margin = "0.8em 0";
    const pair = document.createElement("div");
    pair.style.cssText = "display:flex;gap:10px;flex-wrap:wrap";
    for (const [caption, src] of [["before", URL.createObjectURL(file)], ["after (protected)", href]]) {
      const figure = document.createElement("figure");
      figure.style.margin = "0";
      const img = Object.assign(document.createElement("img"), { src, alt: `${file.name}, ${caption}` });
      img.style.cssText = "max-width:320px;max-height:240px;display:block";
      const label = document.createElement("figcaption");
      label.textContent = caption;
      figure.append(img, label);
      pair.append(figure);
    }
    const a = document.createElement("a");
    a.href = href;
    a.download = made.name;
    a.textContent = `${made.name} (${made.size})`;
    item.append(pair, a);
    return item;
  }

  const noiseOf = (i) => own[i] || noise;
  const ready = () => files.length > 0 && files.every((_, i) => noiseOf(i));

  async function render() {
    const mine = ++run;
    folderButton.style.display = canWriteFolder && ready() ? "inline-block" : "none";
    if (!ready()) {
      say(files.length ? "Type a description above and make noise, or describe each photo below." :
        noise ? "Noise ready. Choose photos: they stay in this browser." : "Type a description and make noise first.");
      return;
    }
    clearResults();
    if (canWriteFolder && files.length > IN_MEMORY_ALBUM) {
      say(`${files.length} photos chosen: protect them into a folder, one copy at a time, so that the page ` +
          "holds none of them in memory.");
      return;
    }
    const done = [], failed = [];
    for (const [i, file] of files.entries()) {
      say(`Protecting ${i + 1} of ${files.length} in this browser…`);
      const made = await protectOne(file, noiseOf(i));
      if (mine !== run) return;  // new noise or new photos arrived meanwhile
      if (!made) {
        failed.push(unreadable(file));
        continue;
      }
      const href = URL.createObjectURL(made.blob);
      list.append(resultItem(file, made, href));
      done.push({ name: made.name, blob: made.blob, href, change: made.change });
    }
    const last = done[done.length - 1];
    const archive = done.length > 1 ? await zip(done) : null;
    if (mine !== run) return;
    drop(link);
    if (archive) {
      link.href = URL.createObjectURL(archive);
      link.download = "protected.zip";
      link.textContent = `Download all ${done.length} (protected.zip)`;
    } else if (last) {
      link.href = URL.createObjectURL(last.blob);
      link.download = last.name;
      link.textContent = `Download ${last.name}`;
    }
    link.style.display = done.length ? "inline-block" : "none";
    finish(done.length ? `Protected ${done.length} photo${done.length > 1 ? "s" : ""} in this browser` : null, [], failed,
           Math.max(0, ...done.map((d) => d.change)));
  }

  // What the saved files hold, in plain words: how far any colour value moved, and why.
  function changeWords(change) {
    const budget = Math.round(noiseOf(0).epsilon * 255);
    if (formatInput.value !== "jpeg") {
      return `each colour value changed by at most ${change} of 255 steps (the noise; invisible to the eye)`;
    }
    return `as JPEG each colour value is at most ${change} of 255 steps from your photo: the noise moves it by ` +
      `up to ${budget}, JPEG's own compression by the rest (choose PNG to keep exactly the noise)`;
  }

  // The closing status of a pass: what was made (and what the files hold), what was kept and what failed.
  function finish(made, kept, failed, change = null) {
    const parts = made ? [`${made}: ${change === null ? "" : changeWords(change) + ". "}Nothing was uploaded.`] : [];
    if (kept.length) parts.push(`Already there, kept: ${kept.join(", ")}.`);
    if (failed.length) parts.push(`Not protected: ${failed.join("; ")}.`);
    say(parts.join(" "));
  }

  // Write every protected copy into a folder the user picks; a file of that name already there is kept.
  async function protectIntoFolder() {
    const mine = ++run;
    clearResults();
    let folder;
    try {
      folder = await window.showDirectoryPicker({ id: "t2ue-protected", mode: "readwrite" });
    } catch (err) {
      say("No folder chosen: nothing was saved.");
      return;
    }
    const saved = [], kept = [], failed = [];
    let change = 0;
    for (const [i, file] of files.entries()) {
      if (mine !== run) return;
      say(`Protecting ${i + 1} of ${files.length} into “${folder.name}”…`);
      const made = await protectOne(file, noiseOf(i));
      if (!made) {
        failed.push(unreadable(file));
        continue;
      }
      try {
        await folder.getFileHandle(made.name);
        kept.push(made.name);  // never written over
        continue;
      } catch (err) {
        if (err.name !== "NotFoundError") { failed.push(`${made.name}: ${err.message}`); continue; }
      }
      try {
        const writable = await (await folder.getFileHandle(made.name, { create: true })).createWritable();
        await writable.write(made.blob);
        await writable.close();  // the copy appears whole, under its name, only now
        saved.push(made.name);
        change = Math.max(change, made.change);
      } catch (err) {
        failed.push(`${made.name}: could not be written (${err.message})`);
      }
    }
    finish(`Saved ${saved.length} protected photo${saved.length === 1 ? "" : "s"} into “${folder.name}”`, kept, failed,
           saved.length ? change : null);
  }

  // The server's answer (JSON: the budget and the noise as a PNG) as {epsilon, image}, once decoded.
  function decodeNoise(payload) {
    const data = typeof payload === "string" ? JSON.parse(payload) : payload;
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve({ epsilon: data.epsilon, image: img });
      img.onerror = () => reject(new Error("the noise did not decode"));
      img.src = data.png;
    });
  }

  // Noise for several descriptions in one request to the app's own /noises endpoint (gradio's queue API),
  // in the same order: the words are all that is sent.
  async function fetchNoises(texts) {
    const app = (window.gradio_config && window.gradio_config.root) || document.baseURI;
    const url = new URL("gradio_api/call/noises", app.endsWith("/") ? app : app + "/");
    const started = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                                       body: JSON.stringify({ data: [texts] }) });
    if (!started.ok) throw new Error(`the server answered ${started.status}`);
    const { event_id: id } = await started.json();
    const events = await (await fetch(`${url}/${id}`)).text();  // server-sent events, ending with the result
    const complete = events.split(/^event: /m).find((event) => event.startsWith("complete"));
    if (!complete) throw new Error("the server made no noise for them");
    const payloads = JSON.parse(JSON.parse(complete.slice(complete.indexOf("data:") + 5))[0]);
    return Promise.all(payloads.map(decodeNoise));
  }

  // The description a photo app wrote into the file's XMP (dc:description, its x-default language),
  // read here from the file's first 256 KB, where the packet sits in JPEG, HEIC and WebP; "" if none.
  async function xmpDescription(file) {
    const head = new TextDecoder("utf-8", { fatal: false }).decode(await file.slice(0, 1 << 18).arrayBuffer());
    const packet = head.match(/<x:xmpmeta[\s\S]*?<\/x:xmpmeta>/);
    if (!packet) return "";
    const xml = new DOMParser().parseFromString(packet[0], "application/xml");
    const field = xml.getElementsByTagNameNS("http://purl.org/dc/elements/1.1/", "description")[0];
    if (!field) return "";
    const items = Array.from(field.getElementsByTagNameNS("http://www.w3.org/1999/02/22-rdf-syntax-ns#", "li"));
    const chosen = items.find((li) => li.getAttribute("xml:lang") === "x-default") || items[0] || field;
    return chosen.textContent.split(/\s+/).filter(Boolean).join(" ");
  }

  // One line per chosen photo for its own description (several photos only: one photo's is the one above),
  // filled in with what the photo's XMP says, for the user to read before anything is sent.
  function listPhotos() {
    const inputs = files.map(() => {
      const box = Object.assign(document.createElement("textarea"), { rows: 2, placeholder: "the description above" });
      box.style.cssText = "width:100%;box-sizing:border-box;resize:vertical";
      return box;
    });
    eachList.replaceChildren(...files.map((file, i) => {
      const item = document.createElement("li");
      const label = document.createElement("label");
      label.append(file.name, document.createElement("br"), inputs[i]);
      item.append(label);
      return item;
    }));
    each.style.display = files.length > 1 ? "" : "none";
    if (files.length < 2) return;
    Promise.all(files.map((file) => xmpDescription(file).catch(() => ""))).then((texts) => {
      texts.forEach((text, i) => { if (text && !inputs[i].value) inputs[i].value = text; });
      if (texts.some(Boolean)) each.open = true;  // the photos carry descriptions: show them
    });
  }

  const TEXTS_PER_CALL = Number(each.dataset.textsPerCall);  // what /noises takes in one request

  async function makeEachNoise() {
    const mine = ++run;
    const texts = Array.from(eachList.querySelectorAll("textarea"), (input) => input.value.trim());
    const distinct = [...new Set(texts.filter(Boolean))];
    const made = new Map();
    try {
      for (let start = 0; start < distinct.length; start += TEXTS_PER_CALL) {
        const part = distinct.slice(start, start + TEXTS_PER_CALL);
        say(`Making noise for ${distinct.length} description${distinct.length > 1 ? "s" : ""} (only the words are sent)…`);
        (await fetchNoises(part)).forEach((noise, k) => made.set(part[k], noise));
        if (mine !== run) return;
      }
    } catch (err) {
      say(`No noise made: ${err.message}. Nothing was protected.`);
      return;
    }
    own = texts.map((text) => made.get(text) || null);
    render();
  }

  folderButton.addEventListener("click", () => { if (ready()) protectIntoFolder(); });
  eachMake.addEventListener("click", () => { if (files.length) makeEachNoise(); });
  photoInput.addEventListener("change", () => {
    files = Array.from(photoInput.files);
    own = files.map(() => null);
    listPhotos();
    render();
  });
  formatInput.addEventListener("change", render);

  root.t2ueSetNoise = (payload) => {
    if (!payload || !(typeof payload === "string" ? JSON.parse(payload) : payload).png) return;
    decodeNoise(payload).then((decoded) => { noise = decoded; render(); });
  };
  window.t2ueZeroContact = root;
  say("Type a description and make noise first.");
})(element);
