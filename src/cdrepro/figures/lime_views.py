"""LIME views of single feature heads (the paper's Appendix B, Figures 8-9), for a run whose
method has per-sample sigmoid heads (``EmbeddedRun.heads``: CD's feature predictor output f).

For a few heads, the images on which the head's output is above a threshold (0.75 in the paper),
each with the superpixels that raise that head's output most outlined in yellow. LIME
(``lime_image.LimeImageExplainer``) switches superpixels off at random ``num_samples`` times
(5000 in the paper), runs the model on each perturbed image and fits a linear model of the
head's output on which superpixels were on.

Which heads: a list of head indices, or a number N: the first N heads, by index, that fire above
the threshold on at least ``images_per_head`` images. The paper picked its heads by the same
rule ("some other heads produced fewer than six images that met the 0.75 threshold").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from lime import lime_image
from lime.wrappers.scikit_image import SegmentationAlgorithm
from skimage.segmentation import mark_boundaries

from cdrepro import augment as aug
from cdrepro.device import autocast
from cdrepro.figures.embedding import EmbeddedRun

log = logging.getLogger(__name__)

HIGHLIGHT = (1.0, 1.0, 0.0)  # yellow, as the paper's figures


def top_images(outputs: np.ndarray, head: int, threshold: float, count: int) -> np.ndarray:
    """Positions (in ``outputs``) of at most ``count`` images whose ``head`` output is above
    ``threshold``, highest output first."""
    above = np.flatnonzero(outputs[:, head] > threshold)
    return above[np.argsort(-outputs[above, head], kind="stable")][:count]


def choose_heads(outputs: np.ndarray, lime_params: dict[str, Any]) -> list[int]:
    """The heads to show (see the module docstring); a listed head that does not exist is an error."""
    heads, threshold, per_head = lime_params["heads"], lime_params["threshold"], lime_params["images_per_head"]
    n_heads = outputs.shape[1]
    if isinstance(heads, list):
        unknown = [h for h in heads if not 0 <= h < n_heads]
        if unknown:
            raise ValueError(f"figures.lime.heads: {unknown} not a head of this model (heads 0..{n_heads - 1})")
        return list(heads)
    eligible = [h for h in range(n_heads) if (outputs[:, h] > threshold).sum() >= per_head]
    if len(eligible) < heads:
        log.warning(
            "only %d heads fire above %g on at least %d images; showing those", len(eligible), threshold, per_head
        )
    return eligible[:heads]


def eval_images(run: EmbeddedRun, positions: np.ndarray) -> np.ndarray:
    """The images at ``positions`` of the run's embedded images as the model sees them:
    (n, S, S, 3) float64 in [0, 1] (the evaluation transform)."""
    batch = torch.from_numpy(run.data.images[run.indices[positions]])
    return aug.eval_transform(aug.to_float(batch), run.settings.image_size).permute(0, 2, 3, 1).double().numpy()


def head_outputs(run: EmbeddedRun):
    """LIME's classifier function: (n, S, S, 3) images -> (n, K) head outputs."""

    @torch.no_grad()
    def predict(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(images, dtype=np.float32)).permute(0, 3, 1, 2).to(run.device)
        with autocast(run.device, run.settings.precision):
            return run.model(x)[run.heads].float().cpu().numpy()

    return predict


def segmenter(segmentation: dict[str, Any], seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The superpixel segmentation LIME perturbs, its labels renumbered 0..n-1.

    LIME takes the superpixels as features 0..n-1 and switches feature z off by masking
    ``segments == z``; SLIC numbers its superpixels from 1, so feature 0 masked nothing and
    the last superpixel was never switched off. Renumbering suits every algorithm."""
    segment = SegmentationAlgorithm(segmentation["algorithm"], **segmentation.get("options", {}), random_seed=seed)

    def zero_based(image: np.ndarray) -> np.ndarray:
        segments = segment(image)
        return np.unique(segments, return_inverse=True)[1].reshape(segments.shape)

    return zero_based


def explain(run: EmbeddedRun, image: np.ndarray, head: int, lime_params: dict[str, Any]) -> tuple[np.ndarray, int]:
    """The mask of the superpixels that raise ``head`` most (at most ``num_features`` of them,
    positive weights only) and the number of superpixels the image was cut into."""
    seed = lime_params["seed"]
    segment = segmenter(lime_params["segmentation"], seed)
    explainer = lime_image.LimeImageExplainer(random_state=seed)
    explanation = explainer.explain_instance(
        image,
        head_outputs(run),
        labels=(head,),
        top_labels=None,
        num_samples=lime_params["num_samples"],
        batch_size=lime_params["batch_size"],
        segmentation_fn=segment,
        random_seed=seed,
    )
    _, mask = explanation.get_image_and_mask(
        head, positive_only=True, num_features=lime_params["num_features"], hide_rest=False
    )
    return mask.astype(bool), int(np.unique(explanation.segments).size)


def lime_frame(run: EmbeddedRun, lime_params: dict[str, Any]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """One row per (head, image) shown, and the matching outlined images (S, S, 3)."""
    rows, pictures = [], []
    values = run.head_values
    for head in choose_heads(values, lime_params):
        positions = top_images(values, head, lime_params["threshold"], lime_params["images_per_head"])
        for rank, (position, image) in enumerate(zip(positions, eval_images(run, positions), strict=True)):
            mask, n_segments = explain(run, image, head, lime_params)
            label = int(run.labels[position])
            rows.append(
                {
                    "head": head,
                    "rank": rank,
                    "image": int(run.indices[position]),
                    "label": label,
                    "class": run.data.class_names[label],
                    "output": float(values[position, head]),
                    "segments": n_segments,
                    "highlighted_pixels": int(mask.sum()),
                }
            )
            pictures.append(mark_boundaries(image, mask.astype(int), color=HIGHLIGHT))
    columns = ["head", "rank", "image", "label", "class", "output", "segments", "highlighted_pixels"]
    return pd.DataFrame(rows, columns=columns), pictures


def plot_lime(frame: pd.DataFrame, pictures: list[np.ndarray], lime_params: dict[str, Any], title: str) -> plt.Figure:
    """A grid: one row per head, its images left to right by output."""
    heads = list(dict.fromkeys(frame["head"]))
    columns = max(1, lime_params["images_per_head"])
    fig, axes = plt.subplots(
        max(1, len(heads)), columns, figsize=(1.6 * columns + 0.6, 1.8 * max(1, len(heads))), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for row, picture in zip(frame.to_dict("records"), pictures, strict=True):
        ax = axes[heads.index(row["head"])][row["rank"]]
        ax.imshow(picture, interpolation="nearest")
        # A text, not a title: matplotlib re-lays out every axes title of the grid on each draw.
        ax.text(
            0.5,
            1.02,
            f"{row['class']} ({row['output']:.2f})",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=7,
        )
    for i, head in enumerate(heads):
        axes[i][0].text(
            -0.08, 0.5, f"head {head}", transform=axes[i][0].transAxes, rotation=90, ha="right", va="center", fontsize=8
        )
    if not heads:
        axes[0][0].text(
            0.5,
            0.5,
            f"no head fires above {lime_params['threshold']:g} on {lime_params['images_per_head']} images",
            ha="center",
            va="center",
        )
    fig.suptitle(
        f"{title}: LIME, images with head output > {lime_params['threshold']:g} "
        f"(class (output)); yellow: the regions that raise the head most",
        fontsize=9,
    )
    return fig
