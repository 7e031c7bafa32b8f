"""The fault suite's parts (see bench/faults.py): the processes it owns and breaks, the
scenarios that break them, and the checks that judge a trial against the simulators' records."""
