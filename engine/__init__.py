"""Flight actors: pure seat rules and the actor loop. No HTTP, no SQL."""
