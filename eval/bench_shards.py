"""Reading training pairs from WebDataset tar shards against the same pairs unpacked into files.

Writes Fashion-MNIST pictures (upscaled to 256 px JPEGs, img2dataset's default size) with
their captions both as shards and as a folder + CSV, then times indexing each source and decoding every
image once through the training data loader. Saves the figures with the machine named.

    python eval/bench_shards.py [--pairs 20000] [--out eval/results/bench-shards.json]
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image


def compare_readers(shards: list[Path], n: int) -> dict:
    """Index the shards and read every sample's image bytes and caption once: t2ue's reader against
    webdataset's indexed one (wids, when installed: `pip install 'webdataset<1'`)."""
    from t2ue.data.sets import load_shards

    started = time.perf_counter()
    pairs = load_shards(str(shards[0].parent))
    total = sum(len(member.open().read()) for member in pairs.images) + sum(map(len, pairs.captions))
    out = {"t2ue": {"index_and_read_all_s": round(time.perf_counter() - started, 2), "bytes": total}}
    try:
        import wids
    except ImportError:
        out["wids"] = "not installed"
        return out
    started = time.perf_counter()
    counts = [len(tarfile.open(shard).getnames()) // 2 for shard in shards]  # wids needs each shard's length
    with tempfile.TemporaryDirectory() as cache:
        dataset = wids.ShardListDataset([{"url": str(s), "nsamples": c} for s, c in zip(shards, counts)],
                                        cache_dir=cache, transformations=[])
        total = 0
        for i in range(len(dataset)):
            sample = dataset[i]
            total += len(sample[".jpg"].read()) + len(sample[".txt"].read().decode())
    out["wids"] = {"index_and_read_all_s": round(time.perf_counter() - started, 2), "bytes": total,
                   "version": getattr(wids, "__version__", "webdataset<1")}
    assert len(dataset) == n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--per-shard", type=int, default=5000)
    parser.add_argument("--out", default="eval/results/bench-shards.json")
    args = parser.parse_args()

    from bench_speed import machine
    from torch.utils.data import DataLoader

    from t2ue.data.sets import PairDataset, load_dataset, load_fashion_mnist
    from t2ue_eval.runner import write_json

    source = load_fashion_mnist(size=64)  # the cached size, upscaled as written
    n = min(args.pairs, len(source))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "files").mkdir()
        rows = ["image,caption"]
        shard = None
        for i in range(n):
            buffer = io.BytesIO()
            Image.fromarray(source.images[i]).resize((256, 256), Image.BICUBIC).save(buffer, "JPEG", quality=90)
            payload, caption = buffer.getvalue(), source.captions[i]
            if i % args.per_shard == 0:
                if shard is not None:
                    shard.close()
                shard = tarfile.open(tmp / f"{i // args.per_shard:05d}.tar", "w")
            for name, data in ((f"{i:08d}.jpg", payload), (f"{i:08d}.txt", caption.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                shard.addfile(info, io.BytesIO(data))
            (tmp / "files" / f"{i:08d}.jpg").write_bytes(payload)
            rows.append(f"files/{i:08d}.jpg,\"{caption}\"")
        shard.close()
        (tmp / "pairs.csv").write_text("\n".join(rows) + "\n")
        last = (n - 1) // args.per_shard
        result = {"machine": machine(), "pairs": n, "image": "256 px JPEG q90 (Fashion-MNIST upscaled), read at 64 px",
                  "shards": last + 1}
        for label, spec in (("shards", str(tmp / f"{{00000..{last:05d}}}.tar")), ("files", str(tmp / "pairs.csv"))):
            started = time.perf_counter()
            pairs = load_dataset(spec).readable()
            indexed = time.perf_counter() - started
            loader = DataLoader(PairDataset(pairs, 64), batch_size=256, num_workers=0,
                                collate_fn=lambda batch: len(batch))
            started = time.perf_counter()
            seen = sum(loader)
            decode = time.perf_counter() - started
            assert seen == n, (label, seen)
            result[label] = {"index_and_header_check_s": round(indexed, 2), "decode_all_s": round(decode, 2),
                             "pairs_per_s": round(n / decode, 1)}
        result["shard_vs_files_decode_ratio"] = round(result["shards"]["decode_all_s"] / result["files"]["decode_all_s"], 3)
        result["readers"] = compare_readers(sorted(tmp.glob("*.tar")), n)
    print(json.dumps(result, indent=2))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
