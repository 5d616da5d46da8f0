"""A dict with the interface of Airflow's ``task_state_store`` for operator tests that call
``execute()`` directly; the ``dag.test()`` tests use Airflow's real one."""


class DictStateStore(dict):
    def set(self, key, value, **_):
        if value is None:
            raise ValueError("Cannot set value as None")
        self[key] = value

    def delete(self, key):
        self.pop(key, None)
