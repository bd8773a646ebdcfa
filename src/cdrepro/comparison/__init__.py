"""The methods comparison: every method trained here under one protocol, side by side with the
published numbers (the ``compare_methods`` target; the ``methods_table`` step, ``cdrepro
methods-table``).

- ``frame``: the numbers, ours and the published ones, lined up under the method they are of
  (``methods.csv``), and the paired differences of ours (``methods_differences.csv``);
- ``table``: that frame as LaTeX (``methods.tex``).
- ``shift``: each method across one property of its data, and the change from its smallest
  value; keyed by K in ``clusters`` (``many_clusters.tex``, CDC's claim) and by the imbalance
  ratio in ``long_tail`` (``long_tail.tex``, CLD's claim).

The chart of the same numbers is ``cdrepro.figures.comparison``. "Methods" alone names the
models (``cdrepro.methods``); the files keep their names (``methods.tex``, ...), which users know.
"""
