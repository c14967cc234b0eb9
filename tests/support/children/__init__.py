"""Programs the tests run as child processes, by path (some also importable, to know what they write)."""
