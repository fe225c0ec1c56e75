"""Simulated drone hardware and fleets: run real drone agents on a laptop.

- `hw_sim.camera.SimCamera`: synthetic NYC street frames with parked cars, legible plates and
  ground truth, deterministic for a seed.
- `hw_sim.position.RoutePosition`: a GPS flying real NYC street routes.
- `hw_sim.power.SimBattery`: a draining 4S LiPo.
- `hw_sim.autopilot.SimAutopilot`: a simulated PX4 speaking MAVLink 2 over UDP (pymavlink).
- `hw_sim.nmea`: an NMEA log of a route, for gpsd's gpsfake.
- `hw_sim.truth`: what the simulator drew in each frame (`TruthPlate`), kept beside the frame.
- `hw_sim.recognizer.SimRecognizer`: the recognizer plug-in that reads that truth.
- `hw_sim.link.LinkProxy`: a real TCP proxy to the broker that can be cut, stalled and slowed.
- `hw_sim.fleet.Fleet`: N real agents on simulated hardware, each behind its own LinkProxy.
- `hw_sim.faults`: the fleet's link-fault schedule (`LinkFaults`, `fault_schedule`) and its timer.
- `hw_sim.nyc`: the NYC tables (routes, plate formats, vehicle values), sources in docs/hw_sim.md.

Errors::

    Exception
     +-- ValueError                       bad argument (names the argument and the value)
     +-- drone_agent.hardware.HardwareError   SimCamera closed or its simulated fault fired
     +-- SimError                         the simulator cannot do its job
          +-- LinkError                   LinkProxy cannot listen, or used before start()
          +-- FleetError                  a fleet cannot start (agent failed to start, bad layout)

Heavy imports (OpenCV, numpy, the agent) happen in the submodules, not here.
"""

from __future__ import annotations


class SimError(Exception):
    """The simulator cannot do what was asked."""


class LinkError(SimError):
    """A LinkProxy cannot listen, or was used before start()."""


class FleetError(SimError):
    """A fleet cannot be set up or started."""


__all__ = ["FleetError", "LinkError", "SimError"]
