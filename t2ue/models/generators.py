"""Text-conditioned noise generators. Every backbone returns delta = epsilon * tanh(.) at its resolution.

``luma=True`` (t2ue-gan) makes one noise plane shared by the three colour channels: the perturbation then
lives entirely in JPEG's full-resolution luma channel (chroma is subsampled and coarsely quantised) and
passes a grayscale conversion unchanged, since the ITU-R 601 luma weights sum to one.

Two backbones share one registry and one save/load format (``generator_config.json`` + safetensors):

* ``t2ue-gan`` - the published T2UE generator: noise z -> 4x4 map -> upsampling residual blocks whose
  normalisation is modulated by the text embedding, gamma(e_t) * (h - mu) / sigma + beta(e_t).
* ``unet`` - a diffusers ``UNet2DConditionModel`` that cross-attends to the per-token text states in a
  single forward pass (no sampling loop); it can start from a pretrained Stable Diffusion UNet folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from t2ue.io.files import atomic_path, write_text

GENERATOR_CONFIG = "generator_config.json"
GENERATOR_WEIGHTS = "generator.safetensors"


class TextConditionedNorm(nn.Module):
    """Batch norm without its own affine; scale and shift are predicted from the text embedding."""

    def __init__(self, channels: int, text_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.affine = nn.Linear(text_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)
        with torch.no_grad():
            self.affine.bias.copy_(torch.cat([torch.ones(channels), torch.zeros(channels)]))

    def forward(self, h: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(text).chunk(2, dim=-1)
        return gamma[..., None, None] * self.norm(h) + beta[..., None, None]


class UpBlock(nn.Module):
    """Residual block that doubles the resolution, conditioned on text in both normalisations."""

    def __init__(self, c_in: int, c_out: int, text_dim: int):
        super().__init__()
        self.norm1 = TextConditionedNorm(c_in, text_dim)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = TextConditionedNorm(c_out, text_dim)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.act = nn.LeakyReLU(0.2)

    def forward(self, h: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.up(self.act(self.norm1(h, text))))
        out = self.conv2(self.act(self.norm2(out, text)))
        return out + self.skip(self.up(h))


class NoiseGenerator(nn.Module):
    """Base class: a config dict, a registry name, safetensors save/load."""

    kind: str = ""
    uses_tokens: bool = False

    def __init__(self, **config):
        super().__init__()
        self.config = dict(config)

    @property
    def epsilon(self) -> float:
        return float(self.config["epsilon"])

    @property
    def resolution(self) -> tuple[int, int]:
        return tuple(self.config["resolution"])

    def latent_shape(self) -> tuple[int, ...]:
        """Shape of the random input z for one sample."""
        raise NotImplementedError

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path / GENERATOR_WEIGHTS) as tmp:
            save_file(state, str(tmp))
        write_text(path / GENERATOR_CONFIG, json.dumps({"kind": self.kind, **self.config}, indent=2))
        return path


class T2UEGenerator(NoiseGenerator):
    """The published T2UE generator (SSA-GAN style, no discriminator)."""

    kind = "t2ue-gan"

    def __init__(self, *, text_dim: int, resolution: tuple[int, int] | int = 64, epsilon: float = 8 / 255,
                 z_dim: int = 100, channels: tuple[int, ...] | None = None, luma: bool = False):
        res = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        channels = tuple(channels or self.channels_for(res[0]))
        n_up = len(channels) - 1
        if res[0] != res[1] or res[0] != 4 * 2**n_up:
            raise ValueError(f"t2ue-gan with {len(channels)} channel stages makes {4 * 2**n_up} px, not {res}")
        super().__init__(text_dim=text_dim, resolution=list(res), epsilon=epsilon, z_dim=z_dim,
                         channels=list(channels), luma=bool(luma))
        self.fc = nn.Linear(z_dim + text_dim, 4 * 4 * channels[0])
        self.blocks = nn.ModuleList(UpBlock(a, b, text_dim) for a, b in zip(channels[:-1], channels[1:]))
        self.out_norm = TextConditionedNorm(channels[-1], text_dim)
        self.out = nn.Conv2d(channels[-1], 1 if luma else 3, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    @staticmethod
    def channels_for(resolution: int, widest: int = 128, narrowest: int = 16) -> tuple[int, ...]:
        """Channel widths for a square output of ``resolution`` (4 px doubled until it is reached)."""
        ups = int(resolution).bit_length() - 3
        if resolution < 8 or 4 * 2**ups != resolution:
            raise ValueError(f"t2ue-gan needs a resolution of 4 * 2^k pixels (8, 16, ..., 256), got {resolution}")
        return tuple(max(narrowest, widest >> i) for i in range(ups + 1))

    def latent_shape(self) -> tuple[int, ...]:
        return (self.config["z_dim"],)

    def forward(self, text_embedding: torch.Tensor, z: torch.Tensor, tokens=None, mask=None) -> torch.Tensor:
        h = self.fc(torch.cat([z, text_embedding], dim=-1)).view(z.shape[0], -1, 4, 4)
        for block in self.blocks:
            h = block(h, text_embedding)
        h = self.out(self.act(self.out_norm(h, text_embedding)))
        delta = self.epsilon * torch.tanh(h)
        return delta.repeat(1, 3, 1, 1) if self.config["luma"] else delta


class UNetGenerator(NoiseGenerator):
    """A diffusers UNet2DConditionModel used as a one-pass, text-cross-attending noise generator."""

    kind = "unet"
    uses_tokens = True

    def __init__(self, *, token_dim: int, resolution: tuple[int, int] | int = 64, epsilon: float = 8 / 255,
                 unet_config: dict | None = None):
        from diffusers import UNet2DConditionModel

        res = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        unet_config = dict(unet_config or small_unet_config(token_dim))
        unet_config.update(in_channels=3, out_channels=3, sample_size=list(res))
        super().__init__(token_dim=token_dim, resolution=list(res), epsilon=epsilon)
        self.unet = UNet2DConditionModel.from_config(unet_config)
        self.config["unet_config"] = {k: v for k, v in dict(self.unet.config).items() if not k.startswith("_")}
        cross = self.unet.config.cross_attention_dim
        self.text_proj = nn.Identity() if cross == token_dim else nn.Linear(token_dim, cross)

    def latent_shape(self) -> tuple[int, ...]:
        return (3, *self.resolution)

    def forward(self, text_embedding: torch.Tensor, z: torch.Tensor, tokens: torch.Tensor = None,
                mask: torch.Tensor = None) -> torch.Tensor:
        if tokens is None:
            raise ValueError("the unet generator needs per-token text states")
        timestep = torch.zeros(z.shape[0], device=z.device, dtype=torch.long)
        out = self.unet(z, timestep, encoder_hidden_states=self.text_proj(tokens),
                        encoder_attention_mask=mask).sample
        return self.epsilon * torch.tanh(out)

    @classmethod
    def from_stable_diffusion(cls, unet_path: str | os.PathLike, *, token_dim: int,
                              resolution: int = 64, epsilon: float = 8 / 255) -> UNetGenerator:
        """Start from a pretrained (Stable Diffusion) UNet folder: its weights are kept wherever shapes allow.

        SD UNets work on 4 latent channels; the 3-channel pixel input and output convolutions are
        initialised from the first three of its latent channels.
        """
        from diffusers import UNet2DConditionModel

        path = Path(unet_path)
        if (path / "unet").is_dir():
            path = path / "unet"
        pretrained = UNet2DConditionModel.from_pretrained(str(path), use_safetensors=True)
        config = {k: v for k, v in dict(pretrained.config).items() if not k.startswith("_")}
        model = cls(token_dim=token_dim, resolution=resolution, epsilon=epsilon, unet_config=config)
        source = pretrained.state_dict()
        target = model.unet.state_dict()
        for name, tensor in source.items():
            if name not in target:
                continue
            if target[name].shape == tensor.shape:
                target[name] = tensor
            elif name.startswith("conv_in.weight"):
                target[name] = tensor[:, :3]
            elif name.startswith(("conv_out.weight", "conv_out.bias")):
                target[name] = tensor[:3]
        model.unet.load_state_dict(target)
        return model


def small_unet_config(token_dim: int) -> dict:
    """A CPU-sized UNet2DConditionModel (about 2 M parameters) for 64 px noise."""
    return dict(
        block_out_channels=[32, 64, 64],
        down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        layers_per_block=1,
        cross_attention_dim=token_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


GENERATORS: dict[str, type[NoiseGenerator]] = {T2UEGenerator.kind: T2UEGenerator, UNetGenerator.kind: UNetGenerator}


def build_generator(kind: str, **config) -> NoiseGenerator:
    """Create a generator by registry name."""
    if kind not in GENERATORS:
        raise ValueError(f"unknown generator {kind!r}; choose from {sorted(GENERATORS)}")
    return GENERATORS[kind](**config)


def load_generator(path: str | os.PathLike) -> NoiseGenerator:
    """Load a generator saved with ``save_pretrained`` (safetensors only; nothing is unpickled)."""
    path = Path(path)
    config = json.loads((path / GENERATOR_CONFIG).read_text())
    kind = config.pop("kind")
    generator = build_generator(kind, **config)
    generator.load_state_dict(load_file(str(path / GENERATOR_WEIGHTS)))
    return generator.eval()
