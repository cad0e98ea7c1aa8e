"""Simulated hardware (transmitters, boxes, card readers) speaking the real protocols."""
