"""The control channel: Circus's JSON-over-ZeroMQ commands, served by gcircusd and spoken by gcircusctl."""
