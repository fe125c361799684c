"""The duty-officer console: who may sign in, what each role may see and do, and the pages and API
behind it.

    users        accounts: role, areas, argon2 password hash; created with ``broadcast users add``
    access       roles, permissions and area scopes: what a user may see and act on
    sessions     browser sessions (HttpOnly, SameSite=Strict cookie) with a CSRF token each
    api_tokens   bearer tokens for machine clients, stored only as digests
    login_limit  failed sign-ins counted per account and per address; too many lock both for a while
    auth         the middleware that guards /api/v1/* and /console, and the sign-in pages
    alerts_api   the alert routes of the JSON API, acting as the signed-in user
    ...          the console's pages (compose, confirm, alert, progress stream, audit, users, community)
"""
