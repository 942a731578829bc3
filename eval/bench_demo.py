"""What an album's noise costs a client of a served noise model: one ``/noise`` request per description
against one ``/noises`` request for all of them, over HTTP on loopback, with the bundled default model.

Launches the demo as a provider would (zero-contact only), fetches the noise for N distinct
descriptions both ways with gradio's own client, checks both give the same noise, and saves the
figures with the machine named.

    python eval/bench_demo.py [--texts 64] [--out eval/results/bench-demo.json]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import time

import numpy as np
from PIL import Image


def _levels(payload: dict) -> np.ndarray:
    """The noise PNG of a payload as its 8-bit levels."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(payload["png"].split(",", 1)[1]))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--out", default="eval/results/bench-demo.json")
    args = parser.parse_args()

    from bench_speed import machine
    from gradio_client import Client

    from t2ue.demo.app import build_app
    from t2ue_eval.runner import write_json

    texts = [f"photo {i} of our summer holiday: the beach, the harbour and the old town" for i in range(args.texts)]
    app = build_app("default", local_tab=False)
    app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(app.local_url, verbose=False)
        client.predict("warm-up", api_name="/noise")
        client.predict(["warm-up"], api_name="/noises")
        started = time.perf_counter()
        one_by_one = [json.loads(client.predict(text, api_name="/noise")) for text in texts]
        each_s = time.perf_counter() - started
        started = time.perf_counter()
        at_once = json.loads(client.predict(texts, api_name="/noises"))
        batch_s = time.perf_counter() - started
    finally:
        app.close()
    # the same noise, to the 8-bit transport: batching pads the texts, which moves the floats by ~1e-7
    worst = max(int(np.abs(_levels(a).astype(int) - _levels(b)).max()) for a, b in zip(one_by_one, at_once))
    if worst > 1:
        raise SystemExit(f"/noise and /noises gave different noise for the same words ({worst} levels apart)")
    result = {
        "machine": machine(),
        "model": "bundled default (t2ue-gan 64 px + MiniLM text tower)",
        "texts": args.texts,
        "noise_one_request_each_s": round(each_s, 3),
        "noises_one_request_s": round(batch_s, 3),
        "speedup": round(each_s / batch_s, 1),
        "largest_difference_levels": worst,
    }
    print(json.dumps(result, indent=2))
    write_json(args.out, result)


if __name__ == "__main__":
    main()
