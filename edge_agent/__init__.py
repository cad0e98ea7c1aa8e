"""Edge agent for commodity stations and dispensing boxes.

Kept light on purpose: ``edge_agent.wire`` and ``edge_agent.configfile`` are imported by the
server and the simulators, and importing them must not pull in the agent.
"""

__version__ = "0.1.0"
