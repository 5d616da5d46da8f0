"""A dict with the interface of Airflow's ``task_state_store`` for operator tests that call
``execute()`` directly; the ``dag.test()`` tests use Airflow's real one."""


class DictStateStore(dict):
    def set(self, key, value, **_):
        if value is None:
            raise ValueError("Cannot set value as None")
        self[key] = value

    def delete(self, key):
        self.pop(key, None)


class FileStateStore:
    """The same interface kept in a folder, one JSON file a key, each written whole (a rename): what
    a process killed with SIGKILL leaves is what a later process reads, as with Airflow's own store."""

    def __init__(self, folder):
        from pathlib import Path

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key):
        return self.folder / (key.replace(":", "_") + ".json")

    def get(self, key, default=None):
        import json

        path = self._path(key)
        return json.loads(path.read_text()) if path.exists() else default

    def set(self, key, value, **_):
        import json
        import os

        path = self._path(key)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(value))
        os.replace(temporary, path)

    def delete(self, key):
        self._path(key).unlink(missing_ok=True)

    def clear(self):
        for path in self.folder.glob("*.json"):
            path.unlink()

    def values(self):
        import json

        return [json.loads(path.read_text()) for path in sorted(self.folder.glob("scaledown_window_*.json"))]
