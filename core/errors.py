"""The one exception a tab turns into a message for its user (no Gradio here, so models/
and train/ can raise it too)."""


class BadInput(ValueError):
    """Input a user can fix (empty canvas, number out of range): shown as a message."""
