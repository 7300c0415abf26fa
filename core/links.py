"""Deep links: a URL that opens a tab with its inputs set, so a lecturer can link a prepared view.

    /?tab=translation&text=A+dog+runs+on+the+beach.&beam=4
    /?tab=style_transfer&content=rocket&painting=starry_night&method=fast

A tab's build() names the inputs a link may set (field) and what runs once they are set
(on_open); app.py builds each tab inside `tab(name)`, then calls wire(). The page keeps its
address bar in step with the open tab and those inputs (ADDRESS_BAR_JS), so copying the
address bar copies the view. A parameter that does not parse is ignored, never an error.
"""
from contextlib import contextmanager
from dataclasses import dataclass, field as dataclass_field
from typing import Callable

import gradio as gr


@dataclass
class Field:
    tab: str
    key: str
    component: gr.components.Component
    parse: Callable  # the query's string -> the component's value; raises ValueError if it cannot


@dataclass
class Opener:
    tab: str
    fn: Callable
    inputs: list
    outputs: list
    options: dict = dataclass_field(default_factory=dict)


FIELDS: list[Field] = []
OPENERS: list[Opener] = []
_building: list[str] = []  # the tab whose build() is running


@contextmanager
def tab(name: str):
    _building.append(name)
    try:
        yield
    finally:
        _building.pop()


def field(key: str, component, parse: Callable | None = None):
    """Let a link set `component` from ?key=...; parse turns the text into its value (default:
    the text itself, or a number for a Slider or Number)."""
    if not _building:  # a tab built on its own (a test, a notebook): no page, no links
        return component
    if parse is None:
        parse = float if isinstance(component, (gr.Slider, gr.Number)) else str
    FIELDS.append(Field(_building[-1], key, component, parse))
    return component


def choice(component: gr.Dropdown | gr.Radio) -> Callable:
    """A parser that accepts only one of the component's choices (their values)."""
    values = [c[1] if isinstance(c, (tuple, list)) else c for c in component.choices]

    def parse(text):
        if text not in values:
            raise ValueError(f"{text!r} is not one of {values}")
        return text

    return parse


def on_open(fn: Callable, inputs: list, outputs: list, **options):
    """Run fn(*inputs) -> outputs after a link has opened this tab with at least one field set
    (options: e.g. preprocess=False, concurrency_id, as for an event)."""
    if _building:
        OPENERS.append(Opener(_building[-1], fn, inputs, outputs, options))


def clear():
    FIELDS.clear()
    OPENERS.clear()


def read(query: dict, tab_ids: set[str]) -> tuple[str | None, dict[str, object]]:
    """The tab a query names (None: none or unknown) and {key: parsed value} of its fields."""
    name = query.get("tab")
    if name not in tab_ids:
        return None, {}
    values = {}
    for f in FIELDS:
        if f.tab == name and query.get(f.key) not in (None, ""):
            try:
                values[f.key] = f.parse(query[f.key])
            except (ValueError, TypeError, OverflowError):
                pass  # a mistyped link still opens its tab
    return name, values


def wire(demo: gr.Blocks, select_tab: Callable[[str], list], tab_outputs: list, tab_ids: set[str]):
    """On page load: open the tab a link names, set its fields, run its opener. select_tab(name)
    returns the updates of tab_outputs (the bars) that show that tab."""
    field_components = [f.component for f in FIELDS]
    # An opener runs when its trigger changes: the link's tab with a field set changes it. (A
    # component rendered but hidden: the page fires its change event; a gr.State's it did not.)
    triggers = [gr.Number(0, visible="hidden", elem_classes=["link-trigger"]) for _ in OPENERS]

    def open_link(request: gr.Request):
        name, values = read(dict(request.query_params), tab_ids)
        if name is None:
            return [gr.skip()] * (len(tab_outputs) + len(FIELDS) + len(OPENERS))
        updates = [values[f.key] if f.tab == name and f.key in values else gr.skip() for f in FIELDS]
        runs = [1 if values and opener.tab == name else gr.skip() for opener in OPENERS]
        return select_tab(name) + updates + runs

    demo.load(open_link, None, tab_outputs + field_components + triggers, api_name="open_link",
              api_visibility="private", queue=False, show_progress="hidden")
    for opener, trigger in zip(OPENERS, triggers):
        trigger.change(opener.fn, opener.inputs, opener.outputs, api_name=f"open_link_{opener.tab}",
                       api_visibility="private", **opener.options)
    # Changing a linked input writes it into the address bar (see ADDRESS_BAR_JS).
    for f in FIELDS:
        f.component.change(None, [f.component], None, js=f"(v) => window.dlpLink('{f.tab}', '{f.key}', v)",
                           api_name=f"link_{f.tab}_{f.key}", api_visibility="private")


def on_tab_select(tab_component: gr.Tab, group: str, members: list[str], is_theme: bool):
    """Selecting a tab (members: [its name]) or a theme (members: its tabs) writes the tab shown
    into the address bar."""
    tab_component.select(None, None, None, js=f"() => window.dlpTab('{group}', {members!r}, {str(is_theme).lower()})",
                         api_name=f"link_{group if is_theme else members[0]}", api_visibility="private")


# Loaded with the page (app.py passes it to launch(js=...)). A picture's value is a file: the link
# keeps its name without the extension (a shipped example's name), which the tab looks up.
ADDRESS_BAR_JS = """
() => {
  window.dlpShown = {};
  // A theme's bar shows the tab last shown there; a link (or the page) may have opened one already.
  window.dlpTab = (group, members, isTheme) => {
    const open = new URL(window.location.href).searchParams.get('tab');
    if (!isTheme) window.dlpShown[group] = members[0];
    else if (members.includes(open)) return [];
    return window.dlpLink(window.dlpShown[group] || members[0]);
  };
  window.dlpLink = (tab, key, value) => {
    const url = new URL(window.location.href);
    if (url.searchParams.get('tab') !== tab) {  // another tab: its own inputs only
      url.search = '';
      url.searchParams.set('tab', tab);
    }
    if (key !== undefined) {
      let text = value;
      if (value && typeof value === 'object') {
        text = (value.orig_name || value.path || '').split('/').pop().replace(/\\.[^.]*$/, '');
      }
      if (text === null || text === undefined || text === '') url.searchParams.delete(key);
      else url.searchParams.set(key, String(text));
    }
    window.history.replaceState(null, '', url);
    return [];
  };
}
"""
