"""Reports: the analysis behind the notebooks, their figures, papermill and the HTML export.

- :mod:`reidlib.reports.analysis`: before / after features, clusters against identities, pair
  distances, the selection's quality on a run's banks;
- :mod:`reidlib.reports.figures`: retrieval grids and one anchor's selection, as pictures;
- :mod:`reidlib.reports.notebooks`: running ``notebooks/`` with papermill into one HTML page.
"""
