"""The start-up heap freeze that keeps full garbage collections off the request path."""

from __future__ import annotations

import gc

from adaptive_plugin.adapters.hooks import freeze_startup_heap
from adaptive_plugin.config import Settings


def test_freeze_moves_the_live_heap_out_of_collections() -> None:
    survivor = [{"i": i} for i in range(1000)]  # long-lived objects, like an imported library's
    gc.unfreeze()
    try:
        assert gc.get_freeze_count() == 0
        freeze_startup_heap()
        assert gc.get_freeze_count() >= len(survivor)
        tracked_after = len(gc.get_objects())  # what a full collection still walks
        assert tracked_after < gc.get_freeze_count()
    finally:
        gc.unfreeze()


def test_freeze_is_on_by_default_and_can_be_turned_off() -> None:
    key = Settings.generate_master_key()
    assert Settings.from_env({"ADAPTIVE_MASTER_KEYS": key}).gc_freeze is True
    assert Settings.from_env({"ADAPTIVE_MASTER_KEYS": key, "ADAPTIVE_GC_FREEZE": "false"}).gc_freeze is False
