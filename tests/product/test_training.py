from pathlib import Path

import torch

from t2ue.models.generators import T2UEGenerator, UNetGenerator, small_unet_config
from t2ue.models.surrogates import load_surrogate
from t2ue.training.trainer import TrainConfig, heldout_loss, train_generator


def test_training_makes_protected_pairs_easier(minilm_surrogate_dir, tiny_pairs, tmp_path):
    """Error-minimising: after a short run, the surrogate's InfoNCE on x + delta is below that on x."""
    surrogate = load_surrogate(minilm_surrogate_dir)
    torch.manual_seed(0)
    generator = T2UEGenerator(text_dim=surrogate.embed_dim, resolution=32, epsilon=16 / 255)
    config = TrainConfig(steps=40, batch_size=16, lr=2e-3, checkpoint_every=1000)
    model = train_generator(generator, surrogate, tiny_pairs, tmp_path / "run", config, progress=False)
    clean = heldout_loss(model, tiny_pairs, protect=False)
    protected = heldout_loss(model, tiny_pairs, protect=True)
    assert protected < clean - 0.05, (protected, clean)


def test_unet_generator_trains(minilm_surrogate_dir, tiny_pairs, tmp_path):
    surrogate = load_surrogate(minilm_surrogate_dir)
    cfg = small_unet_config(surrogate.token_dim) | {"block_out_channels": [8, 16, 16], "norm_num_groups": 4,
                                                    "attention_head_dim": 4}
    generator = UNetGenerator(token_dim=surrogate.token_dim, resolution=16, unet_config=cfg)
    model = train_generator(generator, surrogate, tiny_pairs, tmp_path / "run",
                            TrainConfig(steps=3, batch_size=8, checkpoint_every=1000), progress=False)
    assert (tmp_path / "run" / "model" / "generator" / "generator.safetensors").exists()
    assert model.generate(["a ginger cat"]).abs().max() <= 8 / 255


def test_training_leaves_out_unreadable_files_before_the_first_step(minilm_surrogate_dir, tmp_path):
    """A provider's own pairs file with a missing and a truncated image: both named, the rest trained on."""
    import pytest
    from PIL import Image

    from t2ue.data.sets import load_dataset

    for i in range(4):
        Image.new("RGB", (40, 40), (60 * i, 90, 200 - 40 * i)).save(tmp_path / f"ok{i}.png")
    (tmp_path / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 a jpeg that stops here")
    rows = [f"ok{i}.png,a card in colour {i}" for i in range(4)] + ["cut.jpg,half a photo", "gone.png,no file"]
    (tmp_path / "pairs.csv").write_text("image,caption\n" + "\n".join(rows) + "\n")
    surrogate = load_surrogate(minilm_surrogate_dir)
    generator = T2UEGenerator(text_dim=surrogate.embed_dim, resolution=16)
    with pytest.warns(UserWarning) as caught:
        model = train_generator(generator, surrogate, load_dataset(str(tmp_path / "pairs.csv")), tmp_path / "run",
                                TrainConfig(steps=2, batch_size=2, checkpoint_every=1000), progress=False)
    named = " ".join(str(w.message) for w in caught)
    assert "cut.jpg" in named and "gone.png" in named and "ok0.png" not in named
    assert model.metadata["training"]["pairs"] == 4 and model.metadata["training"]["skipped_files"] == 2


def test_accelerate_launch_trains_on_two_processes(tmp_path):
    """Real data-parallel training: `accelerate launch` with two processes, on the CPU over gloo (the
    launcher's --multi_gpu is its torchrun path; the CPU is chosen by train_generator), checkpoint and
    model written once, by the main process, in the launcher's mixed precision."""
    import json
    import shutil
    import subprocess
    import sys

    from t2ue.models.noise_model import NoiseModel

    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    out = tmp_path / "ddp"
    result = subprocess.run([launcher, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                             "--mixed_precision", "bf16", "--dynamo_backend", "no", "-m", "t2ue", "train",
                             "--data", "fashion-mnist", "--limit-per-set", "64", "--steps", "4", "--batch-size", "8",
                             "--checkpoint-every", "2", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_2"]
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == [4]
    model = NoiseModel.from_pretrained(out / "model")
    assert model.metadata["training"]["processes"] == 2
    assert model.metadata["training"]["mixed_precision"] == "bf16"  # the launcher's choice reaches the run
    assert model.generate(["a sandal"]).abs().max() <= 8 / 255 + 1e-7


def test_an_image_damaged_past_its_header_is_named_when_its_batch_comes(tmp_path):
    """Headers are all the start-up check reads; a file cut short after its header names itself later."""
    import numpy as np
    import pytest
    from PIL import Image

    from t2ue.data.sets import ImageTextSet, PairDataset

    noisy = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    pairs = ImageTextSet([tmp_path / "whole.jpg", tmp_path / "cut.jpg"], ["a", "b"]).readable()
    assert len(pairs) == 2  # both headers are fine
    assert PairDataset(pairs, 16)[0][0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="cut.jpg: damaged image"):
        PairDataset(pairs, 16)[1]
