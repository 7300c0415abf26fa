"""core.sessions.lazy_session_configs: a new Gradio session makes a block's config when it first
needs it, and what it makes is what Gradio's own SessionState would have made."""
import gradio as gr
from gradio.state_holder import SessionState

from core.sessions import lazy_session_configs


def small_app():
    with gr.Blocks() as demo:
        name = gr.Textbox(label="name", value="Ada")
        count = gr.Slider(0, 10, value=3, label="count")
        out = gr.Textbox(label="out")
        choice = gr.Dropdown(["a", "b"], value="a", label="choice")
        gr.State({"seen": 0})
        name.submit(lambda n, c: f"{n} {c}", [name, count], out, api_name="greet")
    return demo


def test_lazy_configs_equal_gradios_eager_ones():
    lazy_session_configs()
    demo = small_app()
    eager = SessionState.__new__(SessionState)
    SessionState._eager_init(eager, demo)
    lazy = SessionState(demo)
    assert dict.__len__(lazy.config_values) == 0  # nothing made yet
    assert len(lazy.config_values) == len(eager.config_values)
    assert dict(lazy.config_values.items()) == eager.config_values
    assert list(lazy.components) == list(eager.components)


def test_session_updates_do_what_they_do_in_gradios_sessions():
    lazy_session_configs()
    demo = small_app()
    dropdown = next(b for b in demo.blocks.values() if isinstance(b, gr.Dropdown))
    eager = SessionState.__new__(SessionState)
    SessionState._eager_init(eager, demo)
    lazy, untouched = SessionState(demo), SessionState(demo)
    for session in (eager, lazy):
        session[dropdown._id] = gr.Dropdown(["x", "y", "z"], value="y", label="choice")
        session._update_value_in_config(dropdown._id, "z")
    assert lazy.config_values[dropdown._id] == eager.config_values[dropdown._id]
    assert lazy.config_values[dropdown._id]["props"]["value"] == "z"
    assert dict(lazy.config_values.items()) == eager.config_values
    assert untouched.config_values[dropdown._id]["props"]["value"] == "a"  # another session's is its own
    assert dropdown._id in untouched.config_values and -1 not in untouched.config_values


def test_patching_twice_keeps_gradios_original():
    lazy_session_configs()
    original = SessionState._eager_init
    lazy_session_configs()
    assert SessionState._eager_init is original
