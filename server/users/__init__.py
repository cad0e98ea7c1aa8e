"""Who may see and do what: people with a role and a place in the four levels, their passwords,
browser sessions, API tokens and the record of what they changed."""
