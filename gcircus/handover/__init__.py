"""gcircusd replacing itself in place (`gcircusctl upgrade`, SIGUSR2): the pid stays, so every child stays its child.

- snapshot: what the running daemon is, as versioned JSON in an inheritable memfd, validated when read back.
- carry: the descriptors that must survive exec (sockets, output pipes, pidfile lock), made inheritable.
- reexec: the old image's side (refuse, stop answering, drain streams, write the snapshot, exec; undo on failure).
- adopt: the new image's side (rebuild sockets and processes from the snapshot before the channels open).
"""
