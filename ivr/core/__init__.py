"""The call core: pure call flow (events in, actions out), no I/O, no clock."""
