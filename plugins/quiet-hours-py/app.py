"""The quiet-hours policy as a compaction:policy@0.2.0 component (built with componentize-py)."""

from wit_world import exports
from wit_world.imports import types
from componentize_py_types import Err

import policy

_policy = policy.QuietHours([])


class Policy(exports.Policy):
    def info(self):
        return types.PluginInfo(name="quiet-hours", version="0.1.0")

    def configure(self, settings):
        global _policy
        try:
            _policy = policy.QuietHours(settings)
        except ValueError as e:
            raise Err(str(e))

    def is_cold(self, p, now_ms):
        return _policy.is_cold(p.keys, now_ms)

    def plan(self, p, files, now_ms):
        kind, answer = _policy.plan(p.keys, [(f.key, f.size) for f in files], now_ms)
        if kind == "skip":
            return types.Decision_Skip(answer)
        return types.Decision_Compact(
            [types.Group(files=ix, target_size=target, compression=None) for ix, target in answer]
        )
