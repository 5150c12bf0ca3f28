"""Reports: the analysis behind the notebooks, their figures, papermill and HTML export."""
