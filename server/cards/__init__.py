"""The card registry: cards by pseudonym, holders apart, quota rules, and the sync to boxes."""
