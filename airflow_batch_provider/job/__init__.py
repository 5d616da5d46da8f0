"""The job: everything between rows and landed results that is neither HTTP nor a destination.

- :mod:`.manifest`: what was submitted (batches and the rows each carries), in storage;
- :mod:`.ledger`: what was paid for while submitting, in ``task_state_store``;
- :mod:`.spool`: the job assembled on local disk before anything is paid for;
- :mod:`.submission`: spool -> identity -> send -> record;
- :mod:`.waiting`: the one rule for "is this job done?";
- :mod:`.reconcile`: output lines matched back to the rows, every row accounted for.

Imports run one way: operators, sensors and triggers use this package; it uses ``hooks``,
``tabular`` and ``protocol``.
"""
