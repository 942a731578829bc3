import json

import pytest
import torch

from t2ue.models.generators import T2UEGenerator, UNetGenerator, load_generator
from t2ue.models.noise_model import NoiseModel
from t2ue.models.surrogates import load_surrogate
from t2ue.models.text_encoders import SurrogateTextEncoder


@pytest.mark.parametrize("fixture", ["minilm_surrogate_dir", "open_clip_dir", "hf_clip_dir"])
def test_surrogate_formats_load_and_backprop_to_pixels(fixture, request):
    surrogate = load_surrogate(request.getfixturevalue(fixture))
    pixels = torch.rand(2, 3, 50, 40, requires_grad=True)  # any size: the model's own resize applies
    image = surrogate.encode_image(pixels)
    text = surrogate.encode_text(["a cat", "a red motorcycle in a studio"])
    assert image.shape == text.shape and torch.allclose(image.norm(dim=-1), torch.ones(2), atol=1e-5)
    (image * text).sum().backward()
    assert pixels.grad is not None and pixels.grad.abs().sum() > 0
    tokens, mask = surrogate.encode_text_tokens(["a cat", "a red motorcycle in a studio"])
    assert tokens.shape[0] == 2 and tokens.shape[-1] == surrogate.token_dim and mask.shape == tokens.shape[:2]
    assert all(not p.requires_grad for p in surrogate.parameters())


def test_partial_surrogate_refuses_foreign_weights(minilm_surrogate_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(minilm_surrogate_dir, broken)
    state = load_file(str(broken / "open_clip_model.safetensors"))
    state.pop(next(k for k in state if k.startswith("visual.")))
    save_file(state, str(broken / "open_clip_model.safetensors"))
    with pytest.raises(ValueError, match="do not match"):
        load_surrogate(broken)
    (broken / "open_clip_model.safetensors").write_bytes(b"\x10\x00")  # truncated
    with pytest.raises(ValueError, match=f"{broken}: not a readable open_clip surrogate folder"):
        load_surrogate(broken)


def test_unknown_surrogate_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a surrogate"):
        load_surrogate(tmp_path)


def _generators(surrogate):
    yield T2UEGenerator(text_dim=surrogate.embed_dim, resolution=16, epsilon=8 / 255)
    yield UNetGenerator(token_dim=surrogate.token_dim, resolution=16, epsilon=8 / 255,
                        unet_config={"block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                                     "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1,
                                     "cross_attention_dim": 16, "attention_head_dim": 4, "norm_num_groups": 4})


def test_both_backbones_round_trip_and_respect_budget(minilm_surrogate_dir, tmp_path):
    surrogate = load_surrogate(minilm_surrogate_dir)
    texts = ["a cat on a sofa", "a cat on a sofa", "the moon over the sea"]
    for i, generator in enumerate(_generators(surrogate)):
        model = NoiseModel(generator.eval(), SurrogateTextEncoder(surrogate))
        noise = model.generate(texts, seed=3)
        assert noise.shape == (3, 3, 16, 16)
        assert noise.abs().max() <= 8 / 255 + 1e-7
        assert torch.equal(noise[0], noise[1])  # same text, same seed
        assert not torch.allclose(noise[0], noise[2])
        assert not torch.allclose(noise, model.generate(texts, seed=4))
        folder = model.save_pretrained(tmp_path / f"nm{i}")
        config = json.loads((folder / "noise_model.json").read_text())
        assert config["epsilon"] == pytest.approx(8 / 255) and config["resolution"] == [16, 16]
        assert (folder / "generator" / "generator.safetensors").exists()
        reloaded = NoiseModel.from_pretrained(folder)
        assert torch.equal(reloaded.generate(texts, seed=3), noise)


def test_class_mode_shares_z_and_differs_from_sample_mode(minilm_surrogate_dir):
    surrogate = load_surrogate(minilm_surrogate_dir)
    model = NoiseModel(T2UEGenerator(text_dim=surrogate.embed_dim, resolution=16).eval(), SurrogateTextEncoder(surrogate))
    cls = model.generate(["sneaker", "bag"], mode="class")
    assert not torch.allclose(cls[0], cls[1])
    assert torch.allclose(cls[0], model.generate(["sneaker"], mode="class")[0], atol=1e-6)  # batch-independent
    assert not torch.allclose(cls[0], model.generate(["sneaker"], mode="sample")[0])
    with pytest.raises(ValueError, match="mode"):
        model.generate(["x"], mode="cluster-of-nothing")


def test_unet_starts_from_a_stable_diffusion_style_folder(minilm_surrogate_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    sd = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                              down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                              up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                              cross_attention_dim=24, attention_head_dim=4, norm_num_groups=4)
    sd.save_pretrained(tmp_path / "sd" / "unet", safe_serialization=True)
    surrogate = load_surrogate(minilm_surrogate_dir)
    generator = UNetGenerator.from_stable_diffusion(tmp_path / "sd", token_dim=surrogate.token_dim, resolution=16)
    assert isinstance(generator.text_proj, torch.nn.Linear)  # 384-d MiniLM tokens -> 24-d cross-attention
    mid = "mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    assert torch.equal(generator.unet.state_dict()[mid], sd.state_dict()[mid])
    assert torch.equal(generator.unet.conv_in.weight, sd.conv_in.weight[:, :3])
    noise = NoiseModel(generator.eval(), SurrogateTextEncoder(surrogate)).generate(["a dog"])
    assert noise.shape == (1, 3, 16, 16) and noise.abs().max() <= 8 / 255
    generator.save_pretrained(tmp_path / "g")
    assert torch.equal(load_generator(tmp_path / "g").unet.conv_in.weight, generator.unet.conv_in.weight)


def test_damaged_noise_model_folder_is_named(tiny_noise_model_dir, tmp_path):
    """A truncated weights file or a broken config: a ValueError that names the folder, not a library error."""
    import shutil

    for damage in ("weights", "config"):
        folder = tmp_path / damage
        shutil.copytree(tiny_noise_model_dir, folder)
        if damage == "weights":
            weights = folder / "generator" / "generator.safetensors"
            weights.write_bytes(weights.read_bytes()[:100])
        else:
            (folder / "noise_model.json").write_text('{"epsilon": ')
        with pytest.raises(ValueError, match=f"{folder}: not a readable noise model"):
            NoiseModel.from_pretrained(folder)
