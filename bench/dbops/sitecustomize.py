"""Counts a benchmark process's database commands by collection when BENCH_DB_OPS_DIR is set (bench only)."""

import json
import os
import threading
from collections import Counter

_DIR = os.environ.get("BENCH_DB_OPS_DIR")
if _DIR:
    from pymongo import monitoring

    _counts: Counter = Counter()
    _WRITES = {"insert", "update", "delete", "findAndModify"}

    _names: dict = {}

    class _Listener(monitoring.CommandListener):
        def started(self, event):
            name = event.command_name
            collection = event.command.get(name)
            _names[(event.connection_id, event.request_id)] = f"{name} {collection}"
            # A write command carries several documents or statements: both are counted.
            items = {"insert": "documents", "update": "updates", "delete": "deletes"}.get(name)
            _counts[f"{name} {collection}"] += 1
            if name in _WRITES:
                _counts["_writes"] += 1
                _counts["_write_items"] += len(event.command.get(items, ())) if items else 1
            _counts["_commands"] += 1

        def succeeded(self, event):
            # The time each kind of command took as this process saw it (µs): where the database's time goes.
            _counts[f"_us {_names.pop((event.connection_id, event.request_id), event.command_name)}"] += event.duration_micros

        def failed(self, event):
            _names.pop((event.connection_id, event.request_id), None)

    monitoring.register(_Listener())

    def _dump() -> None:
        # Written every 0.2 s from a thread: the bench reads the latest after the job completes.
        path = os.path.join(_DIR, f"{os.getpid()}.json")
        while True:
            threading.Event().wait(0.2)
            try:
                with open(path + ".tmp", "w") as f:
                    json.dump(dict(_counts), f)
                os.replace(path + ".tmp", path)
            except OSError:
                return  # the bench removed its folder: nobody reads the counts any more

    threading.Thread(target=_dump, daemon=True).start()
