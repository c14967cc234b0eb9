"""gcircusd replacing itself in place (`gcircusctl upgrade`, SIGUSR2): the pid stays, so every child stays its child.

- snapshot: what the running daemon is, as versioned JSON in an inheritable memfd, validated when read back.
- capture: the snapshot taken, and the descriptors that must survive exec (sockets, output and readiness pipes,
  notify sockets, pidfile lock), made inheritable.
- reexec: the old image's side (refuse, stop answering, drain streams, write the snapshot, exec; undo on failure).
- adopt: the new image's side (rebuild sockets and processes from the snapshot before the channels open).

Each watcher writes down and takes back its own part through public methods (Watcher.handover_state,
adopt_handover, forget_handover: gcircus.watcher_handover); nothing here reaches into a watcher, process or arbiter.
"""
