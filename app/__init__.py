"""UVIS Studio web app (Gradio): a thin shell over the ``uvis`` library."""
