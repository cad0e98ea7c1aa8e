"""IC-card dispensing boxes: card authorisation, quotas, vending, stock per slot (to come)."""
