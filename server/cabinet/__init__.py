"""Dispensing boxes as the server sees them: the cabinet projection and its queries."""
