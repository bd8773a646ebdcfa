"""Figures of a profile's runs (``paths``: ``results/<profile>/figures/`` and ``.../tsne/``).

Each figure is a PNG and a PDF, with the numbers it plots in a CSV beside it, so that the
picture can be checked against the run's files:

- ``tsne``: t-SNE of one run's backbone and final outputs (the paper's Appendix A), and the
  per-run job that makes it (``cdrepro tsne``);
- ``curves``: every loss term (each method's own) and the learning rate per epoch, all runs of
  a dataset;
- ``ablation``: NMI/ARI/ACC per variant, with the paper's and the authors' numbers;
- ``comparison``: the methods comparison's chart: NMI/ARI/ACC per method beside the published
  numbers (the methods table's), for a dataset whose runs are of several methods, with the final
  stage's paired differences;
- ``heads``: how often each feature head fires, and how the heads correlate;
- ``lime_views``: LIME views of single heads (the paper's Appendix B, Figures 8-9);
- ``summary``: the results as an HTML table, for the Snakemake report;
- ``profile``: the profile's job that makes all of these but t-SNE (``cdrepro figures``).

``output`` writes a figure's files (atomically), ``embedding`` runs a trained model over a dataset.
"""
