"""Storeroom climate: transmitter polling, recording, validation and local alarms."""
