"""Report sections for the notebooks: each function shows one section (tables, figures, computed prose)."""
