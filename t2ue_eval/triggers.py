"""Caption triggers for multimodal error-minimising noise (MEM, Liu et al. 2024): a few words the protector
puts in each photo's caption, to which the photo's noise is bound.

A trigger is ``tokens`` whole words of the victim tokenizer's vocabulary (words its BPE keeps as one token,
so they come back as those tokens when the caption is read again), drawn at random and kept, or searched
HotFlip-style: the word at one position replaced by the one whose embedding most lowers the loss to first
order. The trigger goes at the *start* of the caption, so that a 32-token victim context never cuts it off.
"""

from __future__ import annotations

import re

import numpy as np
import torch


def whole_words(tokenizer) -> tuple[list[str], list[int]]:
    """The vocabulary's whole-word tokens of 3 to 10 letters: the words and their token ids."""
    words, ids = [], []
    for token, index in tokenizer.encoder.items():
        word = token.removesuffix("</w>")
        if token.endswith("</w>") and re.fullmatch(r"[a-z]{3,10}", word):
            words.append(word)
            ids.append(index)
    return words, ids


class Triggers:
    """Each sample's trigger words, and the captions they make."""

    def __init__(self, tokenizer, count: int, tokens: int, seed: int):
        self.words, self.ids = whole_words(tokenizer)
        self.tokenizer = tokenizer
        rng = np.random.default_rng([seed, 0x7216])
        self.chosen = rng.integers(len(self.words), size=(count, tokens))  # indices into self.words

    def text(self, i: int) -> str:
        return " ".join(self.words[k] for k in self.chosen[i])

    def caption(self, i: int, caption: str) -> str:
        """Sample ``i``'s trigger before ``caption``."""
        return f"{self.text(i)} {caption}"

    def all(self, captions: list[str]) -> list[str]:
        return [self.caption(i, c) for i, c in enumerate(captions)]

    def hotflip(self, model, rows: np.ndarray, texts: list[str], image_features: torch.Tensor,
                generator: np.random.Generator) -> None:
        """One HotFlip step for the samples ``rows`` whose captions (trigger first) are ``texts``: at one
        random trigger position each, the word whose embedding, to first order, most lowers the loss of
        pulling the caption onto its image's (noisy) features."""
        clip = model.model
        table = clip.token_embedding.weight
        tokens = self.tokenizer(texts).to(table.device)
        captured = {}

        def keep(_module, _inputs, output):
            output.retain_grad()
            captured["embeddings"] = output

        handle = clip.token_embedding.register_forward_hook(keep)
        try:
            text = clip.encode_text(tokens, normalize=True)
        finally:
            handle.remove()
        logits = clip.logit_scale.exp() * image_features.detach() @ text.T
        target = torch.arange(len(rows), device=logits.device)
        loss = torch.nn.functional.cross_entropy(logits.T, target)  # each caption to its own image
        loss.backward()
        grads = captured["embeddings"].grad  # (B, L, D)
        candidates = table[torch.as_tensor(self.ids, device=table.device)].detach()  # (V, D)
        positions = generator.integers(self.chosen.shape[1], size=len(rows))
        for b, (i, position) in enumerate(zip(rows, positions)):
            grad = grads[b, 1 + position]  # after the start-of-text token
            self.chosen[i, position] = int((candidates @ grad).argmin())
        model.zero_grad(set_to_none=True)
