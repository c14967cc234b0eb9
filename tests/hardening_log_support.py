"""A hook that floods gcircusd's own log (run inside gcircusd, by dotted name from a test's config)."""
import logging

FLOOD = 3000  # records, three times what the log queue holds (gcircus.logqueue.MAX_RECORDS)


def flood_the_log(watcher, arbiter, hook_name, **kwargs):
    log = logging.getLogger("gcircus.test.flood")
    for number in range(FLOOD):
        log.warning("flood record %d", number)
    return True
