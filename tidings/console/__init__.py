"""The web console: server-rendered pages under /console for journey designers, on the same
store and services as the API, behind the admin key (a log-in form sets a signed session
cookie). Every asset is served from here: no CDN, no build step."""

from tidings.console.mount import install_console

__all__ = ["install_console"]
