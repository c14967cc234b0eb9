"""The stats channel (PROTOCOL.md 3.4): psutil/procfs sampling and publishing, in gcircusd or standalone."""
from gcircus.stats.channel import StatsLoop, StatsPublisher
from gcircus.stats.sampler import ProcessGone, ProcessSampler, aggregate
from gcircus.stats.service import StatsService

__all__ = ["ProcessGone", "ProcessSampler", "StatsLoop", "StatsPublisher", "StatsService", "aggregate"]
