"""Use cases: orchestrate pure domain decisions and adapters, which callers pass in."""
