"""What the exploiter sees: the labels or captions it trains with, which need not be the protector's.

Protection always uses the protector's view (the set's own captions and labels); the victim is trained
and tested on an exploiter view. ``same`` is the usual assumption; the others are the label-agnostic
settings: coarser labels, or differently worded captions (Fashion-MNIST with other class names and
templates; openclipart with titles only).
"""

from __future__ import annotations

import numpy as np

from t2ue.data.sets import FASHION_TEMPLATES, ImageTextSet, load_dataset, templated_captions

COARSE_FASHION = {"top": (0, 2, 3, 4, 6), "trousers": (1,), "footwear": (5, 7, 9), "bag": (8,)}
# The other plausible four groups: dresses with trousers (long garments) instead of with the tops. The
# K-means clusters of the protector's descriptions at K = 4 come out exactly so, which makes this view
# the diagnostic for whether a coarse exploiter escapes because the groups differ or because the noise is weak.
COARSE_FASHION_ALT = {"top": (0, 2, 4, 6), "trousers or dress": (1, 3), "footwear": (5, 7, 9), "bag": (8,)}
# A nested hierarchy through the alternative four, for how coarse an exploiter may go before protection
# breaks: 10 -> 8 (light tops, warm tops) -> 5 (long garments) -> 4 (all tops) -> 2 (clothes, accessories).
COARSE_FASHION_8 = {"T-shirt or shirt": (0, 6), "trouser": (1,), "pullover or coat": (2, 4), "dress": (3,),
                    "sandal": (5,), "sneaker": (7,), "bag": (8,), "ankle boot": (9,)}
COARSE_FASHION_5 = {"T-shirt or shirt": (0, 6), "pullover or coat": (2, 4), "trousers or dress": (1, 3),
                    "footwear": (5, 7, 9), "bag": (8,)}
COARSE_FASHION_2 = {"clothing": (0, 1, 2, 3, 4, 6), "shoes or bag": (5, 7, 8, 9)}
# The control for that curve: 8 groups too, but from merging pairs that are easy to tell apart, so that
# every hard distinction of the 10 classes (shirt / T-shirt / pullover / coat, sandal / sneaker / boot) is
# still there to learn: is it the number of groups that decides, or which distinctions remain?
COARSE_FASHION_8_EASY = {"T-shirt": (0,), "trouser or bag": (1, 8), "pullover": (2,), "dress or sandal": (3, 5),
                         "coat": (4,), "shirt": (6,), "sneaker": (7,), "ankle boot": (9,)}
COARSE_VIEWS = {"coarse-labels": COARSE_FASHION, "coarse-labels-alt": COARSE_FASHION_ALT,
                "coarse-labels-8": COARSE_FASHION_8, "coarse-labels-5": COARSE_FASHION_5,
                "coarse-labels-2": COARSE_FASHION_2, "coarse-labels-8-easy": COARSE_FASHION_8_EASY}
# The exploiter's own words for Fashion-MNIST: other names for the ten classes and other sentence frames,
# drawn independently of the protector's, so a picture's noise can tell its class but not its caption.
REWORDED_FASHION_CLASSES = ("tee shirt", "pair of pants", "jumper", "gown", "jacket", "flip-flop", "blouse",
                            "trainer", "handbag", "short boot")
REWORDED_FASHION_TEMPLATES = ("an online shop listing for one {}", "{} for sale, plain background",
                              "someone is selling this {}", "close-up of my {}", "item: {}")
# "strip-trigger": an informed scraper who takes out whatever the protector added to its captions (MEM's
# triggers) and trains on the descriptions alone
VIEWS = ("same", *COARSE_VIEWS, "reworded-captions", "title-captions", "strip-trigger")


def exploiter_view(name: str, data: ImageTextSet, dataset: str, size: int, part: str, limit: int | None,
                   ) -> ImageTextSet:
    """``data`` (its pixels kept: they may be protected) with the exploiter's labels and captions."""
    if name in ("same", "strip-trigger"):  # the runner leaves the posted captions out for strip-trigger
        return data
    if name in COARSE_VIEWS:
        if data.name != "fashion-mnist":
            raise ValueError(f"the {name} view is defined for fashion-mnist (10 classes -> "
                             f"{len(COARSE_VIEWS[name])} groups)")
        group = np.zeros(10, dtype=np.int64)
        for g, members in enumerate(COARSE_VIEWS[name].values()):
            group[list(members)] = g
        labels = group[data.labels]
        names = tuple(COARSE_VIEWS[name])
        captions = templated_captions(labels, names, FASHION_TEMPLATES, seed=1)
        return ImageTextSet(data.images, captions, labels, names, data.name, {**data.meta, "view": name})
    if name == "reworded-captions":
        if data.name != "fashion-mnist":
            raise ValueError("the reworded-captions view is defined for fashion-mnist (other class names and "
                             "templates); openclipart has title-captions")
        captions = templated_captions(data.labels, REWORDED_FASHION_CLASSES, REWORDED_FASHION_TEMPLATES, seed=1)
        return ImageTextSet(data.images, captions, data.labels, REWORDED_FASHION_CLASSES, data.name,
                            {**data.meta, "templates": REWORDED_FASHION_TEMPLATES, "view": name})
    if name == "title-captions":
        if dataset != "openclipart":
            raise ValueError("the title-captions view is defined for openclipart (title only vs title + keywords)")
        titled = load_dataset(dataset, size, part=part, limit=limit, caption_style="title")
        if len(titled) != len(data):
            raise ValueError("the title-captions view does not line up with the protector's split")
        return ImageTextSet(data.images, titled.captions, data.labels, data.class_names, data.name,
                            {**data.meta, "view": name})
    raise ValueError(f"unknown exploiter view {name!r}; known: {', '.join(VIEWS)}")
