"""Who may call: clients, signed-JWT client credentials, access tokens, roles and scopes."""
