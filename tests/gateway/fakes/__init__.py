"""Local stand-ins for the upstream APIs the gateway talks to, for tests."""
