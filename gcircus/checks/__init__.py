"""Readiness and health checks of supervised processes: what a check says (spec), how it is run (probes, fdready),
and the sd_notify socket (notify).

Deliberately empty: gcircus.options imports gcircus.checks.spec, which must stay free of gevent and of every
module above the option table, so nothing is imported here.
"""
