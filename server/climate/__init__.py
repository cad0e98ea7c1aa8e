"""Climate history: records from the storerooms' transmitters, queries and (later) reports."""
