"""Who may reach what: the gate's decision ladder, sessions, cookies, tokens, passwords, login limits, subdomain handoff."""
