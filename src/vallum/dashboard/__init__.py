"""The dashboard: server-rendered pages for security teams, served by the gateway under /dashboard.

Same services and roles as the admin API; a browser signs in with an admin token on a login form and keeps
a signed session cookie (the token itself never leaves the login request).
"""

from vallum.dashboard.routes import dashboard_routes

__all__ = ["dashboard_routes"]
