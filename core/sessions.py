"""Gradio 6.31 builds the config of every block of the app each time a session starts
(gradio.state_holder.SessionState.__init__): 68 ms for this app's 461 blocks, and every
call of the HTTP API without a session hash is a new session, so a FizzBuzz answer took
84 ms instead of 26. lazy_session_configs() makes a session build a block's config when it
first uses it (an event that updates that block, or a deep link, which reads them all):
0.3 ms to start one. tests/test_sessions.py checks the result equals Gradio's own."""
import copy
import os


class _ConfigOnDemand(dict):
    """A session's block configs (Gradio's SessionState.config_values), each made the first
    time it is asked for rather than all of them when the session starts."""

    def __init__(self, blocks_config, block_ids):
        super().__init__()
        # a dict, not a set: made in the blocks' order, as Gradio's own dict has them (a set's
        # order follows the ids' hashes, which depend on how many blocks the process made before)
        self._blocks_config, self._pending = blocks_config, dict.fromkeys(block_ids)

    def __missing__(self, key):
        if key not in self._pending:
            raise KeyError(key)
        config = self[key] = self._blocks_config.config_for_block(key, [], self._blocks_config.blocks[key])
        return config

    def __setitem__(self, key, value):
        self._pending.pop(key, None)
        super().__setitem__(key, value)

    def __contains__(self, key):
        return key in self._pending or super().__contains__(key)

    def _fill(self):
        for key in list(self._pending):
            self[key]  # noqa: B018 (makes it)

    def items(self):
        self._fill()
        return super().items()

    def keys(self):
        self._fill()
        return super().keys()

    def values(self):
        self._fill()
        return super().values()

    def __iter__(self):
        self._fill()
        return super().__iter__()

    def __len__(self):
        return len(self._pending) + super().__len__()


def lazy_session_configs() -> None:
    """Patch Gradio's SessionState so a session makes block configs on demand (idempotent)."""
    from gradio.state_holder import SessionState
    if getattr(SessionState, "_configs_on_demand", False):
        return
    eager_init = SessionState.__init__

    def __init__(self, blocks):
        # Gradio's __init__ (6.31) without its dict comprehension over every block.
        self.blocks_config = copy.copy(blocks.default_config)
        self.config_values = _ConfigOnDemand(self.blocks_config,
                                             [k for k in self.blocks_config.blocks if k in blocks.blocks])
        self.state_data = {}
        self._state_ttl = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    SessionState.__init__ = __init__
    SessionState._configs_on_demand = True
    SessionState._eager_init = eager_init
