"""The small shared core: data access (data.py), checkpoint I/O (checkpoints.py), the one
picture reader (pictures.py), BadInput (errors.py), training-loop helpers (training.py),
plots (plots.py), Overview entries (results.py); Gradio-only helpers in ui.py and
sessions.py; ZeroGPU in gpu.py."""
