"""The agent's half of the local endpoint: a session's processes (Backend.AI's ``agent`` and
in-container kernel runner): the sandbox, the fork server, cgroups, limits, services, reaper."""
