import numpy as np
import pytest

from t2ue_eval.metrics import confusion, contrastive_loss_floor, grouped_accuracy, retrieval_metrics


def test_retrieval_by_hand_with_several_captions_and_ties():
    images = np.array([[1.0, 0.0], [0.0, 1.0], [0.7071, 0.7071]])
    # captions 0,1 -> image 0; caption 2 -> image 1; caption 3 -> image 2 (but closer to image 0)
    texts = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    m = retrieval_metrics(images, texts, np.array([0, 0, 1, 2]))
    # i2t: image0 best positive caption1 (score 1) ties caption3 (score 1) -> rank 2; image1 caption2 ties caption0 -> 2;
    # image2: caption3 scores .7071, equal to all others -> rank 4
    assert m["i2t_R@1"] == 0 and m["i2t_R@5"] == 1 and m["i2t_mean_rank"] == pytest.approx(8 / 3)
    # t2i: caption0 -> image0 scores 0, image1 1, image2 .7071 -> rank 3; caption1 -> image0 rank1;
    # caption2 -> image1 rank1; caption3 -> image2 .7071 < image0 1 -> rank 2
    assert m["t2i_R@1"] == 0.5 and m["t2i_median_rank"] == 1.5 and m["t2i_mean_rank"] == pytest.approx(7 / 4)
    assert m["random_t2i_R@1"] == pytest.approx(1 / 3)


def test_confusion_and_grouped_accuracy_by_hand():
    # four classes, groups {0, 1} and {2, 3}; predictions: 0->1, 1->1, 2->0, 3->3, 3->2
    logits = np.eye(4)[[1, 1, 0, 3, 2]]
    matrix = confusion(logits, np.array([0, 1, 2, 3, 3]))
    assert matrix == [[0, 1, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 1]]
    # right class 2 of 5; right group: 0->1, 1->1, 3->3, 3->2 = 4 of 5
    assert grouped_accuracy(matrix, [(0, 1), (2, 3)]) == pytest.approx(0.8)
    assert grouped_accuracy(matrix, [(0,), (1,), (2,), (3,)]) == pytest.approx(0.4)


def test_collapsed_embeddings_score_like_chance():
    same = np.ones((20, 4))
    m = retrieval_metrics(same, same, np.arange(20))
    assert m["i2t_R@10"] == 0 and m["t2i_R@10"] == 0


def test_contrastive_loss_floor_is_the_batch_mean_of_log_repeats():
    assert contrastive_loss_floor(["a"] * 8, 8) == pytest.approx(np.log(8))  # one caption: nothing to tell apart
    assert contrastive_loss_floor([f"photo {i}" for i in range(300)], 128) == 0.0
    # one batch holds all four: "a" twice (ln 2 each), "b" and "c" once (0)
    assert contrastive_loss_floor(["a", "b", "a", "c"], 128) == pytest.approx(np.log(2) / 2)
    halves = contrastive_loss_floor(["x", "y"] * 64, 64, draws=50)  # about 32 copies of each per batch
    assert np.log(24) < halves < np.log(40)
