"""Authentication and authorisation: users, roles, sessions, API tokens, permissions."""
