"""The running node: sequencer, recovery, snapshots and the local client API."""
