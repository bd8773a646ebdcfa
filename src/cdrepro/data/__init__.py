"""Datasets: read each source once into a compact uint8 array file that training and evaluation share.

``sources`` turns a dataset's settings (torchvision archive, scikit-learn digits, or a folder of
images) into raw arrays; ``prepared`` stores them as ``<name>.npz`` plus a ``<name>.json`` that
describes them. Everything after ``cdrepro prepare`` reads only the prepared file.
"""

from cdrepro.data.prepared import PreparedDataset, load_prepared, save_prepared

__all__ = ["PreparedDataset", "load_prepared", "save_prepared"]
