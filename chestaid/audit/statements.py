"""The fixed sentences of an audit report: what the figures can and cannot show."""

from __future__ import annotations

NO_SOURCE_FREE_SPLIT = (
    "A split in which COVID-19 patients never share a source with anything in training "
    "is impossible with this data: every COVID-19 image comes from one adult hospital "
    "(Hannover) and no image of any other class does, while every NORMAL, BACTERIAL and "
    "VIRAL image comes from one pediatric hospital (Guangzhou). Class and source are the "
    "same variable for COVID-19, so no figure here can separate disease signal from "
    "source signal. What the figures can show is a lower bound on the shortcut risk: "
    "how much of the source is visible where no disease is (the borders, and the image "
    "with the lung fields hidden), how much of the model's attention lies outside the "
    "lung fields, and how much its answers move when borders and burned-in text are hidden."
)

LUNG_PRIOR_NOTE = (
    "The lung fields are a fixed anatomical prior (two ellipses in a square frame), not a "
    "segmentation: on an image that is shifted, rotated, or framed differently it misses "
    "lung and covers non-lung."
)

CLASSIFIER_NOTE = (
    "Detector: the region's pixels area-averaged to a {grid} x {grid} picture (pixels "
    "outside the region zeroed) plus a {bins}-bin histogram of the region's grey values, "
    "standardised, into an L2 logistic regression (C = {c}, balanced class weights, not "
    "tuned); out-of-fold scores from {folds}-fold cross-validation grouped by patient and "
    "stratified by source; ROC-AUC with a 95% percentile bootstrap over patients "
    "({n_boot} resamples). Images are first stretched to {size} x {size} as the model's "
    "preprocessing stretches them. A figure near 0.5 means only that this simple "
    "detector finds no source signal there, not that none exists."
)

FILL_NOTE = (
    "Hidden areas are filled with the median of the image's visible pixels. Scores are "
    "the model's raw logits (softmax, arg-max), without its calibrator."
)

TEXT_MARK_NOTE = (
    "Text and marker detection: a white top-hat of the grey image (the image minus its "
    "grey opening by a square {opening:.0%} of the image's side) keeps what is small and "
    "brighter than its surroundings; a connected component of top-hat values of at least "
    "{min_contrast} counts as a glyph when it has at least {min_pixels} pixels, fits in a "
    "box {max_extent:.0%} of each side, and has its centre in the outer {edge_fraction:.0%} "
    "band of the frame. Its bounding box, widened by {pad:.0%} of the side, is hidden. "
    "Checked by eye on a few dozen images of each source: it finds most bright letters "
    "(R, L, AP) and corner labels, misses grey-on-grey markers and dark text on a bright "
    "field, and also hides some small bright rib and clavicle edges near the frame."
)
