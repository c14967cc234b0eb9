"""Helpers shared by the test modules, split by job; test modules import from here, never from each other.

- isolation: the pytest plugin every run loads (child subreaper, default stop signals, the leak check)
- waiting: wait_for, the poll with a deadline that every test waits with
- processes: facts about live processes read from /proc (alive, exec'd, signal dispositions)
- ports: free_port, claimed across every test process of the machine
- daemons: gcircusd as a real process (Daemon, configs on free ports, detached daemons, the command line)
- control: raw clients of the control channel (Wire, Dealer, a bare DEALER) and reply checks
- gcircusctl: a gcircusd ready for the client and gcircusctl tests, and gcircusctl's command line
- streams: gcircusd for the stream end-to-end tests, and reading what it wrote
- plugins: an in-process arbiter with a PluginManager, and a UDP listener standing in for statsd
- recorders: event recorders of a watcher and of an arbiter
- lifecycle: a watcher's `state` events as a real subscriber receives them
- sockets: a socket server program for [socket:NAME] tests, and a client asking it
- hookfuncs, sinks: callables gcircusd imports by dotted name (tests.support.hookfuncs.record, ...)
- children: programs the tests run by path (python tests/support/children/NAME.py ...)
- pidns: a program (gcircusd) as PID 1 of a new PID namespace (unshare), and that namespace read from the host
- kubernetes: the files of conf/kubernetes/ as the tests read them (Dockerfile, example config, manifest)

Fixtures live in tests/conftest.py (and support/isolation.py): pytest finds them without imports.
"""
